// Package layers decides which store paths of a runtime closure share an
// image layer.
//
// It exists because an image may hold only so many layers (Docker refuses
// more than 125) while a closure may hold thousands of store paths, and
// because the grouping decides how much clients and storage can share: a
// layer is reused across images only when its exact set of store paths
// recurs. The package is pure: it sees a closure graph (paths, NAR sizes,
// references) and popularity counts, and returns layer groups. It knows
// nothing of Nix, archives or storage.
//
// The rules, in the order they apply:
//
//   - A closure of at most budget paths gets one layer per store path: the
//     most reuse across images.
//   - Otherwise a virtual root points at the requested packages (Graph.Roots),
//     at every big path (NAR size over BigPathSize) and at every popular path
//     (popularity at least PopularCount), so each of these heads a layer of
//     its own. Paths the root still cannot reach (a graph with missing or
//     incomplete roots) are hung off the root as well, those nothing refers
//     to first, so that every path lands in a layer.
//   - Every other path joins the layer of its nearest ancestor in the
//     dominator tree of that graph that is a child of the root: the path
//     without which it would not be in the image. Paths shared by several
//     heads are dominated by the root only and head layers of their own.
//   - While there are more layers than the budget, the least valuable ones
//     merge into one: value is the head's popularity (at least 1) times the
//     layer's total NAR size, so small rarely used layers go first.
//
// The result is deterministic: the same graph, popularity and budget give the
// same layers in the same order (sorted by their first path), whatever the
// order of maps and slices in the input.
package layers

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// DefaultBudget is the layer budget used when Group is given 0: it leaves
// room for the customisation layer under Docker's 125-layer limit, with a
// margin for base images that add their own.
const DefaultBudget = 94

// BigPathSize is the NAR size above which a store path heads a layer of its
// own (100 MB, as Nixery).
const BigPathSize = 100 * 1000 * 1000

// PopularCount is the popularity count from which a store path heads a
// layer of its own (as Nixery: referenced by at least 100 packages).
const PopularCount = 100

// PathInfo describes one store path of the closure.
type PathInfo struct {
	// Size is the NAR size in bytes.
	Size int64
	// References are the store paths this path refers to. Each must be a key
	// of Graph.Paths; a self-reference is ignored.
	References []string
}

// Graph is a runtime closure.
type Graph struct {
	// Roots are the output paths of the requested packages.
	Roots []string
	// Paths is every store path of the closure, roots included.
	Paths map[string]PathInfo
}

// Layer is one group of store paths.
type Layer struct {
	// Paths are the store paths of the layer, sorted.
	Paths []string
	// Size is the sum of their NAR sizes.
	Size int64
}

// PopularityKeys returns the keys under which the popularity of storePath is
// looked up, in order; the first key present in the popularity data wins.
//
// The first key is the store path's name: its last element without the hash
// and the dash after it ("/nix/store/<hash>-glibc-2.40-66-bin" gives
// "glibc-2.40-66-bin"). That is how Nixery's popularity data is keyed. The
// second, when different, is that name without its version, split the way
// Nix's builtins.parseDrvName does: at the first dash that is not followed
// by a letter ("glibc-2.40-66-bin" gives "glibc", "python3.12-requests-2.32.3"
// gives "python3.12-requests"), so that data counted for another version of
// a package still applies. A last element without a dash is its own name.
func PopularityKeys(storePath string) []string {
	name := storePath
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[i+1:]
	}
	keys := []string{name}
	if p := parseDrvName(name); p != name && p != "" {
		keys = append(keys, p)
	}
	return keys
}

// parseDrvName returns the package name of a derivation name, as Nix's
// builtins.parseDrvName: everything before the first dash followed by a
// character that is not a letter.
func parseDrvName(name string) string {
	for i := 0; i+1 < len(name); i++ {
		if name[i] != '-' {
			continue
		}
		c := name[i+1]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return name[:i]
		}
	}
	return name
}

// Popularity returns the popularity count of storePath (0 when unknown),
// looked up under PopularityKeys.
func Popularity(popularity map[string]int, storePath string) int {
	for _, k := range PopularityKeys(storePath) {
		if v, ok := popularity[k]; ok {
			return v
		}
	}
	return 0
}

// Group groups the closure g into at most budget layers (0 means
// DefaultBudget). See the package documentation for the rules. It fails on
// an inconsistent graph: a root or a reference that is not in g.Paths, or a
// negative size.
func Group(g Graph, popularity map[string]int, budget int) ([]Layer, error) {
	if budget == 0 {
		budget = DefaultBudget
	}
	if budget < 0 {
		return nil, fmt.Errorf("layer budget %d: must be positive", budget)
	}
	c, err := newClosure(g)
	if err != nil {
		return nil, err
	}
	n := len(c.paths)
	if n == 0 {
		return nil, nil
	}
	if n <= budget {
		out := make([]Layer, n)
		for i, p := range c.paths {
			out[i] = Layer{Paths: []string{p}, Size: c.sizes[i]}
		}
		return out, nil
	}

	pop := make([]int, n)
	for i, p := range c.paths {
		pop[i] = Popularity(popularity, p)
	}

	// Node 0 is the virtual root; path i is node i+1.
	succ := make([][]int, n+1)
	for i, refs := range c.refs {
		succ[i+1] = make([]int, len(refs))
		for j, r := range refs {
			succ[i+1][j] = r + 1
		}
	}
	heads := make([]bool, n)
	for _, r := range c.roots {
		heads[r] = true
	}
	for i := range c.paths {
		if c.sizes[i] > BigPathSize || pop[i] >= PopularCount {
			heads[i] = true
		}
	}
	for i, h := range heads {
		if h {
			succ[0] = append(succ[0], i+1)
		}
	}
	// Hang whatever the root does not reach off the root, so every path is
	// in the tree: first the unreached paths nothing refers to (the tops of
	// the closure), then, for cycles, any still unreached, in path order.
	seen := reach(succ, 0, make([]bool, n+1))
	referenced := make([]bool, n+1)
	for _, ws := range succ[1:] {
		for _, w := range ws {
			referenced[w] = true
		}
	}
	for _, tops := range []bool{true, false} {
		for v := 1; v <= n; v++ {
			if !seen[v] && (!tops || !referenced[v]) {
				succ[0] = append(succ[0], v)
				reach(succ, v, seen)
			}
		}
	}

	idom := dominators(succ, 0)

	// Each path joins the layer of its ancestor that is a child of the root.
	head := make([]int, n+1)
	for i := range head {
		head[i] = -1
	}
	findHead := func(v int) int {
		var stack []int // iterative: chains in a closure can be long
		for head[v] < 0 && idom[v] != 0 {
			stack = append(stack, v)
			v = idom[v]
		}
		h := head[v]
		if h < 0 {
			h = v
			head[v] = v
		}
		for _, u := range stack {
			head[u] = h
		}
		return h
	}
	groups := make(map[int]*Layer)
	var order []int
	for v := 1; v <= n; v++ {
		h := findHead(v)
		l, ok := groups[h]
		if !ok {
			l = &Layer{}
			groups[h] = l
			order = append(order, h)
		}
		l.Paths = append(l.Paths, c.paths[v-1])
		l.Size = addSize(l.Size, c.sizes[v-1])
	}

	type rated struct {
		Layer
		hi, lo uint64 // popularity × size, 128 bits
	}
	all := make([]rated, 0, len(order))
	for _, h := range order {
		l := groups[h]
		p := max(pop[h-1], 1)
		hi, lo := bits.Mul64(uint64(p), uint64(l.Size))
		all = append(all, rated{Layer: *l, hi: hi, lo: lo})
	}
	// Paths were appended in path order, so each layer's paths are sorted.
	if len(all) > budget {
		slices.SortFunc(all, func(a, b rated) int {
			if a.hi != b.hi {
				return cmpU64(a.hi, b.hi)
			}
			if a.lo != b.lo {
				return cmpU64(a.lo, b.lo)
			}
			return strings.Compare(a.Paths[0], b.Paths[0])
		})
		k := len(all) - budget + 1
		var merged Layer
		for _, l := range all[:k] {
			merged.Paths = append(merged.Paths, l.Paths...)
			merged.Size = addSize(merged.Size, l.Size)
		}
		slices.Sort(merged.Paths)
		all = append([]rated{{Layer: merged}}, all[k:]...)
	}
	out := make([]Layer, len(all))
	for i, l := range all {
		out[i] = l.Layer
	}
	slices.SortFunc(out, func(a, b Layer) int { return strings.Compare(a.Paths[0], b.Paths[0]) })
	return out, nil
}

func cmpU64(a, b uint64) int {
	if a < b {
		return -1
	}
	return 1
}

// addSize adds NAR sizes, saturating instead of overflowing.
func addSize(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

// closure is a validated Graph with paths numbered in sorted order.
type closure struct {
	paths []string
	sizes []int64
	refs  [][]int // sorted, deduplicated, no self-references
	roots []int
}

var errNoPath = errors.New("not in the closure")

func newClosure(g Graph) (*closure, error) {
	c := &closure{paths: make([]string, 0, len(g.Paths))}
	for p := range g.Paths {
		c.paths = append(c.paths, p)
	}
	slices.Sort(c.paths)
	index := make(map[string]int, len(c.paths))
	for i, p := range c.paths {
		index[p] = i
	}
	c.sizes = make([]int64, len(c.paths))
	c.refs = make([][]int, len(c.paths))
	for i, p := range c.paths {
		info := g.Paths[p]
		if info.Size < 0 {
			return nil, fmt.Errorf("store path %s: negative size %d", p, info.Size)
		}
		c.sizes[i] = info.Size
		var refs []int
		for _, r := range info.References {
			j, ok := index[r]
			if !ok {
				return nil, fmt.Errorf("store path %s: reference %s: %w", p, r, errNoPath)
			}
			if j != i {
				refs = append(refs, j)
			}
		}
		slices.Sort(refs)
		c.refs[i] = slices.Compact(refs)
	}
	for _, r := range g.Roots {
		j, ok := index[r]
		if !ok {
			return nil, fmt.Errorf("requested path %s: %w", r, errNoPath)
		}
		c.roots = append(c.roots, j)
	}
	slices.Sort(c.roots)
	c.roots = slices.Compact(c.roots)
	return c, nil
}

// reach marks in seen every node reachable from start and returns seen.
func reach(succ [][]int, start int, seen []bool) []bool {
	stack := []int{start}
	seen[start] = true
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, w := range succ[v] {
			if !seen[w] {
				seen[w] = true
				stack = append(stack, w)
			}
		}
	}
	return seen
}

// dominators returns the immediate dominator of every node reachable from
// root (idom[root] == root; -1 for unreachable nodes), by the iterative
// algorithm of Cooper, Harvey and Kennedy ("A Simple, Fast Dominance
// Algorithm", 2001): process nodes in reverse postorder, set each node's
// dominator to the intersection of its processed predecessors' dominators,
// repeat until nothing changes.
func dominators(succ [][]int, root int) []int {
	n := len(succ)
	// Postorder by an iterative depth-first search.
	post := make([]int, n) // node → postorder number, -1 unvisited
	for i := range post {
		post[i] = -1
	}
	var order []int // nodes in postorder
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
		if !visited[v] {
			continue
		}
		for _, w := range succ[v] {
			preds[w] = append(preds[w], v)
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
		for i := len(order) - 1; i >= 0; i-- { // reverse postorder
			v := order[i]
			if v == root {
				continue
			}
			nd := -1
			for _, p := range preds[v] {
				if idom[p] < 0 {
					continue
				}
				if nd < 0 {
					nd = p
				} else {
					nd = intersect(p, nd)
				}
			}
			if nd != idom[v] {
				idom[v] = nd
				changed = true
			}
		}
	}
	return idom
}
