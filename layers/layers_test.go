package layers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sp makes a store path for a test name, with a hash derived from the name
// so that path order differs from name order.
func sp(name string) string {
	h := sha256.Sum256([]byte(name))
	return "/nix/store/" + hex.EncodeToString(h[:])[:32] + "-" + name
}

// name is the inverse of sp.
func name(path string) string { return path[len("/nix/store/")+33:] }

// node is a test closure entry: name, size and the names it references.
type node struct {
	name string
	size int64
	refs []string
}

func graph(roots []string, nodes ...node) Graph {
	g := Graph{Paths: map[string]PathInfo{}}
	for _, r := range roots {
		g.Roots = append(g.Roots, sp(r))
	}
	for _, n := range nodes {
		var refs []string
		for _, r := range n.refs {
			refs = append(refs, sp(r))
		}
		g.Paths[sp(n.name)] = PathInfo{Size: n.size, References: refs}
	}
	return g
}

// render shows layers as "a b | c", names sorted within a layer, layers
// sorted by their rendering: order-insensitive, for comparing groupings.
func render(ls []Layer) string {
	var parts []string
	for _, l := range ls {
		var ns []string
		for _, p := range l.Paths {
			ns = append(ns, name(p))
		}
		slices.Sort(ns)
		parts = append(parts, strings.Join(ns, " "))
	}
	slices.Sort(parts)
	return strings.Join(parts, " | ")
}

// check verifies the invariants every result must hold.
func check(t testing.TB, g Graph, budget int, ls []Layer) {
	t.Helper()
	if budget == 0 {
		budget = DefaultBudget
	}
	if len(ls) > budget {
		t.Fatalf("%d layers over budget %d", len(ls), budget)
	}
	seen := map[string]int{}
	for i, l := range ls {
		if len(l.Paths) == 0 {
			t.Fatalf("layer %d is empty", i)
		}
		if !slices.IsSorted(l.Paths) {
			t.Fatalf("layer %d paths not sorted: %v", i, l.Paths)
		}
		if i > 0 && ls[i-1].Paths[0] >= l.Paths[0] {
			t.Fatalf("layers %d and %d out of order", i-1, i)
		}
		var size int64
		for _, p := range l.Paths {
			seen[p]++
			size += g.Paths[p].Size
		}
		if size != l.Size {
			t.Fatalf("layer %d size %d, paths sum to %d", i, l.Size, size)
		}
	}
	for p := range g.Paths {
		if seen[p] != 1 {
			t.Fatalf("path %s in %d layers", p, seen[p])
		}
	}
	if len(seen) != len(g.Paths) {
		t.Fatalf("layers hold %d paths, closure has %d", len(seen), len(g.Paths))
	}
}

func TestGroup(t *testing.T) {
	// Two packages sharing a dependency; each with a private library.
	shared := []node{
		{"a", 10, []string{"liba", "common"}},
		{"liba", 10, []string{"common"}},
		{"b", 10, []string{"libb", "common"}},
		{"libb", 10, nil},
		{"common", 10, nil},
	}
	chain := []node{
		{"c1", 1, []string{"c2"}}, {"c2", 1, []string{"c3"}}, {"c3", 1, []string{"c4"}}, {"c4", 1, nil},
	}
	diamond := []node{
		{"top", 1, []string{"left", "right"}},
		{"left", 1, []string{"bottom"}},
		{"right", 1, []string{"bottom"}},
		{"bottom", 1, []string{"deep"}},
		{"deep", 1, nil},
	}
	tests := []struct {
		name   string
		g      Graph
		pop    map[string]int
		budget int
		want   string
	}{
		{name: "empty", g: Graph{}, budget: 5, want: ""},
		{name: "small closure: one layer per path", g: graph([]string{"a", "b"}, shared...), budget: 0,
			want: "a | b | common | liba | libb"},
		{name: "closure equal to budget", g: graph([]string{"a", "b"}, shared...), budget: 5,
			want: "a | b | common | liba | libb"},
		{name: "budget+1: dominator groups", g: graph([]string{"a", "b"}, shared...), budget: 4,
			want: "a liba | b libb | common"},
		{name: "chain collapses into its head", g: graph([]string{"c1"}, chain...), budget: 3,
			want: "c1 c2 c3 c4"},
		{name: "diamond: bottom dominated by top", g: graph([]string{"top"}, diamond...), budget: 4,
			want: "bottom deep left right top"},
		{name: "diamond with two requested sides", g: graph([]string{"left", "right"}, diamond[1:]...), budget: 3,
			want: "bottom deep | left | right"},
		{name: "popular path heads its own layer", g: graph([]string{"c1"}, chain...), budget: 3,
			pop: map[string]int{"c3": PopularCount}, want: "c1 c2 | c3 c4"},
		{name: "popular below threshold stays", g: graph([]string{"c1"}, chain...), budget: 3,
			pop: map[string]int{"c3": PopularCount - 1}, want: "c1 c2 c3 c4"},
		{name: "big path heads its own layer", g: graph([]string{"c1"},
			node{"c1", 1, []string{"c2"}}, node{"c2", 1, []string{"big"}}, node{"big", BigPathSize + 1, []string{"c4"}}, node{"c4", 1, nil}),
			budget: 3, want: "big c4 | c1 c2"},
		{name: "exactly BigPathSize is not big", g: graph([]string{"c1"},
			node{"c1", 1, []string{"c2"}}, node{"c2", 1, []string{"big"}}, node{"big", BigPathSize, []string{"c4"}}, node{"c4", 1, nil}),
			budget: 3, want: "big c1 c2 c4"},
		{name: "unreachable paths hang off the root", g: graph([]string{"c1"},
			node{"c1", 1, nil}, node{"x", 1, []string{"y"}}, node{"y", 1, nil}, node{"z", 1, nil}),
			budget: 3, want: "c1 | x y | z"},
		{name: "no roots at all", g: graph(nil, chain...), budget: 2, want: "c1 c2 c3 c4"},
		{name: "cycle", g: graph([]string{"p"},
			node{"p", 1, []string{"q"}}, node{"q", 1, []string{"r"}}, node{"r", 1, []string{"q", "r"}}),
			budget: 2, want: "p q r"},
		{
			// Five heads, budget 3: the three least valuable merge.
			name: "least valuable layers merge",
			g: graph([]string{"h1", "h2", "h3", "h4", "h5"},
				node{"h1", 50, []string{"d1"}}, node{"d1", 50, nil},
				node{"h2", 10, nil}, node{"h3", 20, nil}, node{"h4", 30, nil}, node{"h5", 40, nil}),
			pop:    map[string]int{"h2": 10}, // 10×10 = 100 > h3's 20 and h4's 30
			budget: 3,
			want:   "d1 h1 | h2 | h3 h4 h5",
		},
		{name: "budget 1 merges everything", g: graph([]string{"a", "b"}, shared...), budget: 1,
			want: "a b common liba libb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, err := Group(tt.g, tt.pop, tt.budget)
			if err != nil {
				t.Fatal(err)
			}
			check(t, tt.g, tt.budget, ls)
			if got := render(ls); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestGroupErrors(t *testing.T) {
	tests := []struct {
		name   string
		g      Graph
		budget int
		want   string
	}{
		{"unknown reference", graph(nil, node{"a", 1, []string{"nope"}}), 1, "reference " + sp("nope")},
		{"unknown root", graph([]string{"nope"}, node{"a", 1, nil}), 1, "requested path " + sp("nope")},
		{"negative size", graph(nil, node{"a", -1, nil}), 1, "negative size"},
		{"negative budget", graph(nil, node{"a", 1, nil}), -1, "budget -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Group(tt.g, nil, tt.budget)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPopularityKeys(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{"/nix/store/00000000000000000000000000000000-glibc-2.40-66-bin", []string{"glibc-2.40-66-bin", "glibc"}},
		{"/nix/store/00000000000000000000000000000000-python3.12-requests-2.32.3", []string{"python3.12-requests-2.32.3", "python3.12-requests"}},
		{"/nix/store/00000000000000000000000000000000-hello", []string{"hello"}},
		{"/nix/store/00000000000000000000000000000000-cacert-3.95-unbundled", []string{"cacert-3.95-unbundled", "cacert"}},
		{"/nix/store/00000000000000000000000000000000-source", []string{"source"}},
		{"/nix/store/00000000000000000000000000000000-foo-", []string{"foo-"}},
		{"nohash", []string{"nohash"}},
		{"", []string{""}},
	}
	for _, tt := range tests {
		if got := PopularityKeys(tt.path); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("PopularityKeys(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	pop := map[string]int{"glibc-2.40-66-bin": 7, "glibc": 3, "zlib": 5}
	for path, want := range map[string]int{
		"/nix/store/00000000000000000000000000000000-glibc-2.40-66-bin": 7, // exact wins
		"/nix/store/00000000000000000000000000000000-glibc-2.39":        3, // other version
		"/nix/store/00000000000000000000000000000000-zlib-1.3.1":        5,
		"/nix/store/00000000000000000000000000000000-zstd-1.5":          0,
	} {
		if got := Popularity(pop, path); got != want {
			t.Errorf("Popularity(%s) = %d, want %d", path, got, want)
		}
	}
}

// bruteDominators computes immediate dominators by definition: d dominates
// v when v is unreachable from root once d is removed.
func bruteDominators(succ [][]int, root int) []int {
	n := len(succ)
	reachWithout := func(skip int) []bool {
		seen := make([]bool, n)
		if skip == root {
			return seen
		}
		stack := []int{root}
		seen[root] = true
		for len(stack) > 0 {
			v := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, w := range succ[v] {
				if w != skip && !seen[w] {
					seen[w] = true
					stack = append(stack, w)
				}
			}
		}
		return seen
	}
	all := reachWithout(-1)
	dom := make([][]bool, n) // dom[d][v]: d dominates v
	for d := 0; d < n; d++ {
		r := reachWithout(d)
		dom[d] = make([]bool, n)
		for v := 0; v < n; v++ {
			dom[d][v] = all[v] && !r[v]
		}
	}
	idom := make([]int, n)
	for v := range idom {
		idom[v] = -1
		if !all[v] {
			continue
		}
		if v == root {
			idom[v] = root
			continue
		}
		// The immediate dominator is the strict dominator dominated by all
		// the others.
		for d := 0; d < n; d++ {
			if d == v || !dom[d][v] {
				continue
			}
			imm := true
			for e := 0; e < n; e++ {
				if e != v && e != d && dom[e][v] && !dom[e][d] {
					imm = false
					break
				}
			}
			if imm {
				idom[v] = d
			}
		}
	}
	return idom
}

func TestDominators(t *testing.T) {
	tests := []struct {
		name string
		succ [][]int
		want []int
	}{
		{"single", [][]int{{}}, []int{0}},
		{"chain", [][]int{{1}, {2}, {3}, {}}, []int{0, 0, 1, 2}},
		{"diamond", [][]int{{1, 2}, {3}, {3}, {4}, {}}, []int{0, 0, 0, 0, 3}},
		{"shared dep under one head", [][]int{{1}, {2, 3}, {4}, {4}, {}}, []int{0, 0, 1, 1, 1}},
		{"unreachable", [][]int{{1}, {}, {1}}, []int{0, 0, -1}},
		{"loop", [][]int{{1}, {2}, {1, 3}, {}}, []int{0, 0, 1, 2}},
		// Figure 2 of Cooper, Harvey & Kennedy, renumbered: the irreducible
		// graph where every node is dominated by the entry only.
		{"chk figure 2", [][]int{{1, 2}, {3}, {4, 5}, {4}, {3, 5}, {4}}, []int{0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dominators(tt.succ, 0)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("dominators = %v, want %v", got, tt.want)
			}
			if brute := bruteDominators(tt.succ, 0); !reflect.DeepEqual(brute, tt.want) {
				t.Errorf("brute force = %v, want %v (test is wrong)", brute, tt.want)
			}
		})
	}
}

func TestDominatorsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 300; iter++ {
		n := 1 + r.IntN(14)
		succ := make([][]int, n)
		for v := range succ {
			for k := r.IntN(4); k > 0; k-- {
				succ[v] = append(succ[v], r.IntN(n))
			}
		}
		got, want := dominators(succ, 0), bruteDominators(succ, 0)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("graph %v: dominators = %v, brute force %v", succ, got, want)
		}
	}
}

// randomGraph builds a closure from a seed: a DAG by default, with shared
// dependencies, varied sizes and some popular names.
func randomGraph(r *rand.Rand, n int) (Graph, map[string]int) {
	g := Graph{Paths: map[string]PathInfo{}}
	names := make([]string, n)
	for i := range names {
		names[i] = sp(fmt.Sprintf("pkg%d-1.%d", i, r.IntN(3)))
	}
	pop := map[string]int{}
	for i, p := range names {
		var refs []string
		for k := r.IntN(4); k > 0 && i+1 < n; k-- {
			refs = append(refs, names[i+1+r.IntN(n-i-1)])
		}
		size := int64(r.IntN(1 << 20))
		if r.IntN(20) == 0 {
			size = BigPathSize + int64(r.IntN(1000))
		}
		g.Paths[p] = PathInfo{Size: size, References: refs}
		if r.IntN(5) == 0 {
			pop[fmt.Sprintf("pkg%d", i)] = r.IntN(2 * PopularCount)
		}
	}
	for k := 1 + r.IntN(3); k > 0; k-- {
		g.Roots = append(g.Roots, names[r.IntN(n)])
	}
	return g, pop
}

// shuffled returns a copy of g with every slice shuffled and the map rebuilt.
func shuffled(r *rand.Rand, g Graph) Graph {
	out := Graph{Roots: slices.Clone(g.Roots), Paths: map[string]PathInfo{}}
	r.Shuffle(len(out.Roots), func(i, j int) { out.Roots[i], out.Roots[j] = out.Roots[j], out.Roots[i] })
	keys := make([]string, 0, len(g.Paths))
	for k := range g.Paths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, k := range keys {
		info := g.Paths[k]
		refs := slices.Clone(info.References)
		r.Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
		out.Paths[k] = PathInfo{Size: info.Size, References: refs}
	}
	return out
}

func TestGroupDeterministicAndWithinBudget(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 200; iter++ {
		n := 1 + r.IntN(300)
		g, pop := randomGraph(r, n)
		budget := 1 + r.IntN(120)
		first, err := Group(g, pop, budget)
		if err != nil {
			t.Fatal(err)
		}
		check(t, g, budget, first)
		for k := 0; k < 3; k++ {
			again, err := Group(shuffled(r, g), pop, budget)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(first, again) {
				t.Fatalf("n=%d budget=%d: shuffled input gave different layers", n, budget)
			}
		}
	}
}

func TestGroupLargeChain(t *testing.T) {
	// A deep chain must not exhaust anything (no recursion per node).
	const n = 20000
	g := Graph{Paths: map[string]PathInfo{}}
	for i := 0; i < n; i++ {
		var refs []string
		if i+1 < n {
			refs = []string{sp(fmt.Sprint(i + 1))}
		}
		g.Paths[sp(fmt.Sprint(i))] = PathInfo{Size: 1, References: refs}
	}
	g.Roots = []string{sp("0")}
	ls, err := Group(g, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	check(t, g, 10, ls)
	if len(ls) != 1 {
		t.Fatalf("chain gave %d layers, want 1", len(ls))
	}
}

// graphFromBytes decodes fuzz input into a closure, popularity and budget.
// Any input decodes to a valid graph (cycles and self-references included).
func graphFromBytes(data []byte) (Graph, map[string]int, int) {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	n := 1 + next()%48
	budget := 1 + next()%(n+4)
	names := make([]string, n)
	for i := range names {
		names[i] = sp(fmt.Sprintf("p%d-%d", i%7, i))
	}
	g := Graph{Paths: map[string]PathInfo{}}
	pop := map[string]int{}
	for _, p := range names {
		info := PathInfo{Size: int64(next()) << (next() % 32)}
		for k := next() % 5; k > 0; k-- {
			info.References = append(info.References, names[next()%n])
		}
		g.Paths[p] = info
	}
	for k := next() % 4; k > 0; k-- {
		g.Roots = append(g.Roots, names[next()%n])
	}
	for k := next() % 4; k > 0; k-- {
		pop[fmt.Sprintf("p%d", next()%7)] = next()
	}
	return g, pop, budget
}

func FuzzGroup(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{10, 3, 1, 1, 2, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		g, pop, budget := graphFromBytes(data)
		ls, err := Group(g, pop, budget)
		if err != nil {
			t.Fatal(err)
		}
		check(t, g, budget, ls)
		r := rand.New(rand.NewPCG(uint64(len(data)), 7))
		again, err := Group(shuffled(r, g), pop, budget)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ls, again) {
			t.Fatalf("not deterministic: %v vs %v", ls, again)
		}
	})
}

func BenchmarkGroup(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	g, pop := randomGraph(r, 3000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Group(g, pop, DefaultBudget); err != nil {
			b.Fatal(err)
		}
	}
}
