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
// A layer recurs only when its content depends on the paths it holds, not
// on the image around them. So the rules look at each store path's name,
// NAR size and popularity only (references and roots are checked for
// consistency, never used), and the image decides one number, the
// threshold B. Paths worth at least B are alone, as every path is in an
// image within the budget; the others are cut into runs by a test local to
// each path. Adding a package then changes the runs its paths fall into
// and, as B rises to make room, a few layers among the least valuable,
// rather than moving shared dependencies out of existing layers. The
// rules:
//
//   - A path's value is its NAR size times its popularity (at least 1),
//     saturating at 2^64-1. Paths are taken in decreasing value, ties in
//     path order.
//   - Given B, every path of value at least B is a layer of its own. The
//     others, in decreasing value, form runs: the first starts a run, and
//     each later one starts a new run when its draw is below value/B, else
//     joins the run before it. A path's draw is a number in [0, 1) fixed by
//     its store path alone (the first 8 bytes of its SHA-256, over 2^64).
//     So a run holds about B of value, runs of small paths hold many
//     paths, and at a given B a new path changes only the run it falls in
//     (splitting it when the new path starts a run).
//   - B is the smallest whole number for which these rules give at most
//     budget layers (the number of layers never grows with B; if no B
//     below 2^64 fits, which takes values near 2^64, all paths make one
//     run). A closure of at most budget paths gets B = 0: one layer per
//     store path, the most reuse across images. Past the budget, B rises
//     just enough: the least valuable paths gather into runs first.
//
// The result is deterministic: the same graph, popularity and budget give the
// same layers in the same order (sorted by their first path), whatever the
// order of maps and slices in the input, on any machine (integer arithmetic
// only).
package layers

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// DefaultBudget is the layer budget used when Group is given 0: it leaves
// room for the customisation layer under Docker's 125-layer limit, with a
// margin for base images that add their own.
const DefaultBudget = 94

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

	es := make([]entry, n)
	for i, p := range c.paths {
		pop := Popularity(popularity, p)
		hi, lo := bits.Mul64(uint64(c.sizes[i]), uint64(max(pop, 1)))
		if hi != 0 {
			lo = math.MaxUint64
		}
		sum := sha256.Sum256([]byte(p))
		es[i] = entry{index: i, value: lo, draw: binary.BigEndian.Uint64(sum[:8])}
	}
	// Paths are numbered in path order, so the index breaks ties.
	slices.SortFunc(es, func(a, b entry) int {
		if a.value != b.value {
			return -cmp.Compare(a.value, b.value)
		}
		return cmp.Compare(a.index, b.index)
	})
	// The smallest threshold that fits: the number of layers never grows
	// with the threshold. If even the largest does not fit (values near
	// 2^64), all paths make one run.
	t := threshold{b: math.MaxUint64}
	if cut(es, t, nil) > budget {
		t = threshold{none: true}
	} else {
		lo, hi := uint64(0), uint64(math.MaxUint64)
		for lo < hi {
			mid := lo + (hi-lo)/2
			if cut(es, threshold{b: mid}, nil) <= budget {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		t.b = lo
	}

	var groups [][]int
	cut(es, t, func(e entry, starts bool) {
		if starts {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], e.index)
	})
	out := make([]Layer, len(groups))
	for i, idx := range groups {
		slices.Sort(idx)
		l := Layer{Paths: make([]string, len(idx))}
		for j, k := range idx {
			l.Paths[j] = c.paths[k]
			l.Size = addSize(l.Size, c.sizes[k])
		}
		out[i] = l
	}
	slices.SortFunc(out, func(a, b Layer) int { return strings.Compare(a.Paths[0], b.Paths[0]) })
	return out, nil
}

// entry is a store path as the rules see it.
type entry struct {
	index int    // in closure (path) order
	value uint64 // NAR size times popularity, saturating
	draw  uint64 // from the store path's hash: the draw times 2^64
}

// threshold is B of the package documentation; none means a B above every
// value: no path is alone and no run starts but the first.
type threshold struct {
	b    uint64
	none bool
}

// cut walks es (in decreasing value), tells visit (when not nil) whether
// each path starts a layer under t, and returns the number of layers. A
// path of value at least B is alone, and those come first; among the
// others, the first starts a run and a later one starts a new run when
// draw/2^64 < value/B, that is when the high word of draw*B is below
// value, else it joins the run before it.
func cut(es []entry, t threshold, visit func(e entry, starts bool)) int {
	layers := 0
	inRun := false
	for _, e := range es {
		starts := true
		switch {
		case !t.none && e.value >= t.b:
		case !inRun:
			inRun = true
		case t.none:
			starts = false
		default:
			hi, _ := bits.Mul64(e.draw, t.b)
			starts = hi < e.value
		}
		if starts {
			layers++
		}
		if visit != nil {
			visit(e, starts)
		}
	}
	return layers
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
}

var errNoPath = errors.New("not in the closure")

func newClosure(g Graph) (*closure, error) {
	c := &closure{paths: make([]string, 0, len(g.Paths))}
	for p := range g.Paths {
		c.paths = append(c.paths, p)
	}
	slices.Sort(c.paths)
	c.sizes = make([]int64, len(c.paths))
	for i, p := range c.paths {
		info := g.Paths[p]
		if info.Size < 0 {
			return nil, fmt.Errorf("store path %s: negative size %d", p, info.Size)
		}
		c.sizes[i] = info.Size
		for _, r := range info.References {
			if _, ok := g.Paths[r]; !ok {
				return nil, fmt.Errorf("store path %s: reference %s: %w", p, r, errNoPath)
			}
		}
	}
	for _, r := range g.Roots {
		if _, ok := g.Paths[r]; !ok {
			return nil, fmt.Errorf("requested path %s: %w", r, errNoPath)
		}
	}
	return c, nil
}
