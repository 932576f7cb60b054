package main

// A port of Nixery's layering (github.com/google/nixery, layers/layers.go,
// GroupLayers), kept to what Nixery does, for comparison only:
//
//   - The graph is the image's runtime closure with a root node that points
//     at every requested package (Nixery's exportReferencesGraph of the
//     image contents: the requested packages, cacert and iana-etc).
//   - A node's size is its closure size (Nixery reads `closureSize` from
//     exportReferencesGraph), not its NAR size.
//   - A node's popularity is the popularity data under its store path name
//     without the hash, 1 when absent; nss-cacert* and iana-etc* get 500000
//     ("glibc has ~300k references, these packages need *more*").
//   - A node is big or popular when its closure size is over 100 MB or its
//     popularity is at least 100; such a node gets an edge from the root.
//   - The top-level subtrees of the dominator tree of that graph are the
//     layers; a layer's merge rating is its root's popularity times the sum
//     of the sizes (closure sizes) of its members.
//   - Layers are sorted by rating, ascending; while there are more than the
//     budget (94), the first is merged into the second (ratings add) and
//     removed: the lowest rated layers end up in one.
//
// Two differences, neither changing which paths share a layer: Nixery sorts
// with sort.Slice, not stable, in the order gonum returns dominator-tree
// children (map order), so equal ratings come out in any order there; here
// ties break on the layer's first path. And dominators are computed with
// the algorithm of Cooper, Harvey and Kennedy rather than gonum's
// Lengauer-Tarjan: both give the same (unique) dominator tree.

import (
	"slices"
	"strings"

	"github.com/nixport/nixport/layers"
)

// nixeryBudget is Nixery's builder.LayerBudget.
const nixeryBudget = 94

func nixeryGroup(g layers.Graph, pop map[string]int, budget int) []layer {
	paths := make([]string, 0, len(g.Paths))
	for p := range g.Paths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	index := make(map[string]int, len(paths))
	for i, p := range paths {
		index[p] = i + 1 // node 0 is the root
	}
	n := len(paths) + 1
	succ := make([][]int, n)
	for i, p := range paths {
		for _, r := range g.Paths[p].References {
			if r != p {
				succ[i+1] = append(succ[i+1], index[r])
			}
		}
	}

	// Closure sizes, as Nix's closureSize: the NAR sizes of every path
	// reachable from the node, itself included.
	closureSize := make([]uint64, n)
	for v := 1; v < n; v++ {
		seen := map[int]bool{v: true}
		stack := []int{v}
		for len(stack) > 0 {
			u := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			closureSize[v] += uint64(g.Paths[paths[u-1]].Size)
			for _, w := range succ[u] {
				if !seen[w] {
					seen[w] = true
					stack = append(stack, w)
				}
			}
		}
	}

	popularity := make([]int, n)
	for v := 1; v < n; v++ {
		id := storeName(paths[v-1])
		switch {
		case strings.HasPrefix(id, "nss-cacert") || strings.HasPrefix(id, "iana-etc"):
			popularity[v] = 500000
		default:
			if p, ok := pop[id]; ok {
				popularity[v] = p
			} else {
				popularity[v] = 1
			}
		}
	}

	// Edges from the root: the image's packages, then big or popular nodes
	// (an edge is added once).
	fromRoot := map[int]bool{}
	for _, r := range g.Roots {
		fromRoot[index[r]] = true
	}
	for v := 1; v < n; v++ {
		if closureSize[v] > 100*1000000 || popularity[v] >= 100 {
			fromRoot[v] = true
		}
	}
	for v := 1; v < n; v++ {
		if fromRoot[v] {
			succ[0] = append(succ[0], v)
		}
	}

	idom := dominatorTree(succ, 0)
	children := make([][]int, n)
	for v := 1; v < n; v++ {
		if idom[v] >= 0 {
			children[idom[v]] = append(children[idom[v]], v)
		}
	}

	type rated struct {
		layer
		rating uint64
	}
	var all []rated
	for _, top := range children[0] {
		var l rated
		var size uint64
		queue := []int{top}
		for len(queue) > 0 {
			v := queue[0]
			queue = queue[1:]
			size += closureSize[v]
			l.paths = append(l.paths, paths[v-1])
			l.size += g.Paths[paths[v-1]].Size
			queue = append(queue, children[v]...)
		}
		slices.Sort(l.paths)
		l.rating = uint64(popularity[top]) * size
		all = append(all, l)
	}
	slices.SortFunc(all, func(a, b rated) int {
		switch {
		case a.rating < b.rating:
			return -1
		case a.rating > b.rating:
			return 1
		}
		return strings.Compare(a.paths[0], b.paths[0])
	})
	for len(all) > budget {
		merged := all[1]
		merged.paths = append(append([]string(nil), all[0].paths...), all[1].paths...)
		merged.size += all[0].size
		merged.rating += all[0].rating
		all[1] = merged
		all = all[1:]
	}
	out := make([]layer, len(all))
	for i, l := range all {
		slices.Sort(l.paths) // a layer is its set of paths
		out[i] = l.layer
	}
	return out
}

// dominatorTree returns the immediate dominator of every node reachable
// from root (idom[root] = -1, as for unreachable nodes), by the iterative
// algorithm of Cooper, Harvey and Kennedy.
func dominatorTree(succ [][]int, root int) []int {
	n := len(succ)
	post := make([]int, n)
	for i := range post {
		post[i] = -1
	}
	var order []int
	visited := make([]bool, n)
	type frame struct{ v, next int }
	stack := []frame{{root, 0}}
	visited[root] = true
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.next < len(succ[f.v]) {
			w := succ[f.v][f.next]
			f.next++
			if !visited[w] {
				visited[w] = true
				stack = append(stack, frame{w, 0})
			}
			continue
		}
		post[f.v] = len(order)
		order = append(order, f.v)
		stack = stack[:len(stack)-1]
	}
	preds := make([][]int, n)
	for v := range succ {
		if visited[v] {
			for _, w := range succ[v] {
				preds[w] = append(preds[w], v)
			}
		}
	}
	idom := make([]int, n)
	for i := range idom {
		idom[i] = -1
	}
	idom[root] = root
	intersect := func(a, b int) int {
		for a != b {
			for post[a] < post[b] {
				a = idom[a]
			}
			for post[b] < post[a] {
				b = idom[b]
			}
		}
		return a
	}
	for changed := true; changed; {
		changed = false
		for i := len(order) - 1; i >= 0; i-- {
			v := order[i]
			if v == root {
				continue
			}
			d := -1
			for _, p := range preds[v] {
				if idom[p] < 0 {
					continue
				}
				if d < 0 {
					d = p
				} else {
					d = intersect(p, d)
				}
			}
			if d != idom[v] {
				idom[v] = d
				changed = true
			}
		}
	}
	idom[root] = -1
	return idom
}
