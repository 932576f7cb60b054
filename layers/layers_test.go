package layers

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"math/bits"
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
	// Sizes a factor 10 apart; their draws (see draw below) are p1000
	// 0.34, p100 0.60, p10 0.54, p1 0.54.
	decades := []node{{"p1000", 1000, nil}, {"p100", 100, nil}, {"p10", 10, nil}, {"p1", 1, nil}}
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
		{name: "empty paths within budget are alone", g: graph(nil, node{"x", 0, nil}, node{"y", 0, nil}, node{"z", 5, nil}), budget: 3,
			want: "x | y | z"},
		// B = 11: p1000 and p100 are worth more, alone; p10 starts a run
		// and p1 joins it (its draw 0.54 is not below 1/11).
		{name: "past the budget the smallest paths share a layer", g: graph(nil, decades...), budget: 3,
			want: "p1 p10 | p100 | p1000"},
		{name: "budget 2", g: graph(nil, decades...), budget: 2, want: "p1 p10 p100 | p1000"},
		{name: "budget 1 puts everything in one layer", g: graph([]string{"a", "b"}, shared...), budget: 1,
			want: "a b common liba libb"},
		// Equal sizes, budget+1: at B = 12 the path whose draw (e4: 0.90) is
		// not below 10/12 joins the run before it (e5's); no B between 10 and
		// 12 fits, and a larger B would merge more.
		{name: "equal sizes past the budget: one merge, not all", g: graph(nil,
			node{"e1", 10, nil}, node{"e2", 10, nil}, node{"e3", 10, nil}, node{"e4", 10, nil}, node{"e5", 10, nil}),
			budget: 4, want: "e1 | e2 | e3 | e4 e5"},
		// Popularity multiplies the value: c3 is worth 3×50 and stays alone
		// while the others, worth 100 or less, make one run.
		{name: "popularity raises the value", g: graph(nil,
			node{"c1", 100, nil}, node{"c2", 90, nil}, node{"c3", 50, nil}, node{"c4", 80, nil}),
			pop: map[string]int{"c3": 3}, budget: 2, want: "c1 c2 c4 | c3"},
		// Popularity, not size alone: a popular path of size 0 is worth 0.
		{name: "an empty popular path joins a run", g: graph(nil,
			node{"c1", 100, nil}, node{"c2", 90, nil}, node{"c3", 0, nil}, node{"c4", 80, nil}),
			pop: map[string]int{"c3": 1000}, budget: 2, want: "c1 | c2 c3 c4"},
		// A path over 100 MB has no rule of its own: worth more than the
		// rest, it is alone.
		{name: "big paths are alone by value", g: graph(nil,
			node{"x", 60e6, nil}, node{"big", 100e6 + 1, nil}, node{"y", 1, nil}, node{"z", 1, nil}),
			budget: 2, want: "big | x y z"},
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

// draw is the draw of a test path, as Group computes it.
func draw(name string) float64 {
	sum := sha256.Sum256([]byte(sp(name)))
	return float64(binary.BigEndian.Uint64(sum[:8])) / (1 << 64)
}

func TestDraws(t *testing.T) {
	// The expectations of TestGroup rely on these.
	for name, want := range map[string]float64{"p1000": 0.34, "p100": 0.60, "p10": 0.54, "p1": 0.54, "e4": 0.90} {
		if got := draw(name); got < want-0.005 || got > want+0.005 {
			t.Errorf("draw(%s) = %.3f, want %.2f", name, got, want)
		}
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
			size = 100e6 + int64(r.IntN(1000))
		}
		g.Paths[p] = PathInfo{Size: size, References: refs}
		if r.IntN(5) == 0 {
			pop[fmt.Sprintf("pkg%d", i)] = r.IntN(200)
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
	// A deep chain of equal paths must not exhaust anything (nothing
	// recurses per path) and spreads over the budget rather than
	// collapsing into one layer.
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
	if len(ls) < 5 {
		t.Fatalf("chain gave %d layers, want 5 to 10", len(ls))
	}
}

func TestGroupIgnoresGraphShape(t *testing.T) {
	// The same paths, sizes and popularity with other references and
	// roots give the same layers: a layer depends on its paths, not on
	// what else the image holds or how it is wired.
	r := rand.New(rand.NewPCG(7, 8))
	for iter := 0; iter < 50; iter++ {
		g, pop := randomGraph(r, 1+r.IntN(300))
		other := Graph{Paths: map[string]PathInfo{}}
		keys := slices.Sorted(maps.Keys(g.Paths))
		for _, p := range keys {
			var refs []string
			for k := r.IntN(3); k > 0; k-- {
				refs = append(refs, keys[r.IntN(len(keys))])
			}
			other.Paths[p] = PathInfo{Size: g.Paths[p].Size, References: refs}
		}
		other.Roots = []string{keys[r.IntN(len(keys))]}
		budget := 1 + r.IntN(120)
		a, err := Group(g, pop, budget)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Group(other, pop, budget)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("budget %d: other references gave other layers", budget)
		}
	}
}

// order returns the paths of g in the order of the rules: decreasing value
// (NAR size times popularity, at least 1), then path.
func order(g Graph, pop map[string]int) []string {
	paths := slices.Sorted(maps.Keys(g.Paths))
	value := func(p string) uint64 {
		hi, lo := bits.Mul64(uint64(g.Paths[p].Size), uint64(max(Popularity(pop, p), 1)))
		if hi != 0 {
			return math.MaxUint64
		}
		return lo
	}
	slices.SortStableFunc(paths, func(a, b string) int { return -cmp.Compare(value(a), value(b)) })
	return paths
}

func TestGroupRunsAreStretches(t *testing.T) {
	// A layer of several paths is a stretch of the value order: every path
	// between its most and its least valuable is in it.
	r := rand.New(rand.NewPCG(9, 10))
	for iter := 0; iter < 200; iter++ {
		g, pop := randomGraph(r, 1+r.IntN(300))
		budget := 1 + r.IntN(120)
		ls, err := Group(g, pop, budget)
		if err != nil {
			t.Fatal(err)
		}
		paths := order(g, pop)
		pos := map[string]int{}
		for i, p := range paths {
			pos[p] = i
		}
		for _, l := range ls {
			if len(l.Paths) < 2 {
				continue
			}
			first, last := len(paths), -1
			for _, p := range l.Paths {
				first, last = min(first, pos[p]), max(last, pos[p])
			}
			if last-first+1 != len(l.Paths) {
				t.Fatalf("budget %d: layer %v is not a stretch of the value order", budget, l.Paths)
			}
		}
	}
}

// universe is a package set shaped like nixpkgs: path i references a few
// paths of lower index, the lowest most often (a libc-like base everything
// reaches), NAR sizes log-normal around 150 kB, popularity counted as
// Nixery's popcount counts it (direct referrers).
type universe struct {
	names []string
	sizes []int64
	refs  [][]int
	pop   map[string]int
}

func newUniverse(seed uint64, n int) *universe {
	r := rand.New(rand.NewPCG(seed, 1))
	u := &universe{names: make([]string, n), sizes: make([]int64, n), refs: make([][]int, n), pop: map[string]int{}}
	for i := range u.names {
		u.names[i] = sp(fmt.Sprintf("pkg%d-1.%d", i, i%3))
		u.sizes[i] = int64(min(max(math.Exp(math.Log(150e3)+1.9*r.NormFloat64()), 200), 3e9))
		if i == 0 {
			continue
		}
		for k := 1 + int(r.ExpFloat64()*3); k > 0; k-- {
			f := r.Float64()
			u.refs[i] = append(u.refs[i], int(float64(i)*f*f*f))
		}
	}
	for i := range u.refs {
		for _, j := range u.refs[i] {
			u.pop[fmt.Sprintf("pkg%d", j)]++
		}
	}
	return u
}

// image is the closure of the given packages.
func (u *universe) image(roots []int) Graph {
	g := Graph{Paths: map[string]PathInfo{}}
	seen := map[int]bool{}
	stack := slices.Clone(roots)
	for _, x := range roots {
		seen[x] = true
		g.Roots = append(g.Roots, u.names[x])
	}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var refs []string
		for _, w := range u.refs[v] {
			refs = append(refs, u.names[w])
			if !seen[w] {
				seen[w] = true
				stack = append(stack, w)
			}
		}
		g.Paths[u.names[v]] = PathInfo{Size: u.sizes[v], References: refs}
	}
	return g
}

// changes compares the layers of an image before and after a package is
// added: the store paths added, the old layers the new image no longer has,
// their bytes, and the bytes of the old image.
func changes(t *testing.T, before, after Graph, pop map[string]int) (added, lost int, lostBytes, total int64) {
	t.Helper()
	old, err := Group(before, pop, 0)
	if err != nil {
		t.Fatal(err)
	}
	check(t, before, 0, old)
	now, err := Group(after, pop, 0)
	if err != nil {
		t.Fatal(err)
	}
	check(t, after, 0, now)
	have := map[string]bool{}
	for _, l := range now {
		have[strings.Join(l.Paths, "\n")] = true
	}
	for _, l := range old {
		total += l.Size
		if !have[strings.Join(l.Paths, "\n")] {
			lost++
			lostBytes += l.Size
		}
	}
	return len(after.Paths) - len(before.Paths), lost, lostBytes, total
}

func TestGroupLargeImageAddPackage(t *testing.T) {
	// An image of about 1500 paths, far over the budget, and the same
	// image with one more package, for 40 packages. Each added path lands
	// in one layer, and the threshold rises to make room, merging a few
	// layers: a package adding k paths changes at most 2k+2 of the old
	// layers, and one adding a handful changes a small part of the image
	// (the dominator rule this replaced changed about 40% for one path).
	u := newUniverse(1, 8000)
	r := rand.New(rand.NewPCG(2, 3))
	var roots []int
	var g Graph
	for len(g.Paths) < 1500 {
		roots = append(roots, 2000+r.IntN(6000))
		g = u.image(roots)
	}
	var sum float64
	for k := 0; k < 40; k++ {
		after := u.image(append(slices.Clone(roots), 2000+r.IntN(6000)))
		added, lost, lostBytes, total := changes(t, g, after, u.pop)
		share := float64(lostBytes) / float64(total)
		sum += share
		if lost > 2*added+2 {
			t.Errorf("%d paths added to %d: %d old layers changed, want at most %d", added, len(g.Paths), lost, 2*added+2)
		}
		if added <= 5 && share > 0.2 {
			t.Errorf("%d paths added to %d: the changed layers hold %.0f%% of the image, want at most 20%%", added, len(g.Paths), 100*share)
		}
	}
	t.Logf("%d paths; for 40 packages added, the changed layers held %.1f%% of the image on average", len(g.Paths), 100*sum/40)
}

func TestGroupCrossingBudget(t *testing.T) {
	// An image within the budget (one layer per path) that a package takes
	// over it: only the smallest paths merge, so every old path worth more
	// than the most valuable path of a new layer of several keeps its
	// layer, and the layers that change hold a small part of the image.
	u := newUniverse(1, 8000)
	r := rand.New(rand.NewPCG(4, 5))
	for found := 0; found < 25; {
		var roots []int
		var g Graph
		for len(g.Paths) < 70 {
			roots = append(roots, 2000+r.IntN(6000))
			g = u.image(roots)
		}
		after := u.image(append(slices.Clone(roots), 2000+r.IntN(6000)))
		if len(g.Paths) > DefaultBudget || len(after.Paths) <= DefaultBudget {
			continue
		}
		found++
		_, _, lostBytes, total := changes(t, g, after, u.pop)
		if share := float64(lostBytes) / float64(total); share > 0.1 {
			t.Errorf("%d -> %d paths: the changed layers hold %.1f%% of the image, want at most 10%%", len(g.Paths), len(after.Paths), 100*share)
		}
		now, _ := Group(after, u.pop, 0)
		paths := order(after, u.pop)
		pos := map[string]int{}
		for i, p := range paths {
			pos[p] = i
		}
		top := len(paths) // position of the most valuable path in a run
		for _, l := range now {
			if len(l.Paths) > 1 {
				for _, p := range l.Paths {
					top = min(top, pos[p])
				}
			}
		}
		alone := map[string]bool{}
		for _, l := range now {
			if len(l.Paths) == 1 {
				alone[l.Paths[0]] = true
			}
		}
		for _, p := range paths[:top] {
			if _, old := g.Paths[p]; old && !alone[p] {
				t.Errorf("%d -> %d paths: %s, worth more than every path that merged, lost its layer", len(g.Paths), len(after.Paths), p)
			}
		}
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
