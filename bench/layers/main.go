// Command layers compares ways of grouping an image's Nix closure into
// layers, on the same closures, and prints the comparison in one run:
//
//   - nixport: layers.Group with layers.DefaultBudget, given popularity
//     data counted over the package set the way Nixery's popcount counts
//     nixpkgs (the data NIX_POPULARITY_URL serves); and, for reference,
//     with no popularity data, nixport's default;
//   - one layer per image: the whole closure in one layer;
//   - Nixery: a port of Nixery's layers.GroupLayers (nixery.go, below).
//
// The closures are real. The package set bench/layers/pkgs.nix (a few
// hundred store paths shaped like nixpkgs) is realised offline by nixport's
// own Nix driver, and every image is read the way nixport reads it: its
// name parsed by nixsource.ParseImageName (base packages cacert and iana-etc
// added, meta-packages expanded), then resolve, nix-store --realise and nix
// path-info --json --recursive.
//
// It prints, for a corpus of 21 images:
//
//  1. bytes stored divided by bytes of unique store paths: a layer is
//     stored once however many images share it (a layer is identified by
//     its exact set of store paths);
//  2. the bytes a client downloads again when one package is added to an
//     image it has pulled: the layers of the new image that the old image
//     did not have, beside the size of the store paths the package adds.
//
// A layer's size is the sum of its paths' NAR sizes: uncompressed bytes,
// close to the size of the tar. The customisation layer (symlinks to the
// packages, a few kB, one per image whatever the strategy) is not counted.
//
// Run it from the repository root: go run ./bench/layers
package main

import (
	"context"
	_ "crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/layers"
	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/source/nixsource"
)

// image is one image of the corpus, as a user names it, and the package
// that user adds to it next.
type image struct {
	name string
	add  string
}

// corpus is what users pull: small tools images, language runtimes,
// services, data science and media images, overlapping as real users'
// images do (python3 under git, awscli2 and Jupyter; glibc under nearly
// everything). Each of the three paths over 100 MB (go, openjdk-headless,
// llvm-lib) is in two images. The last image is within the layer budget
// and the package added takes it over.
var corpus = []image{
	{"shell", "htop"},
	{"shell/git/htop", "vim"},
	{"git", "jq"},
	{"go/gopls", "golangci-lint"},
	{"python3", "python3Packages.requests"},
	{"python3Packages.flask/python3Packages.requests", "python3Packages.gunicorn"},
	{"python3Packages.pandas/python3Packages.scikit-learn/python3Packages.matplotlib", "python3Packages.seaborn"},
	{"python3Packages.jupyterlab/python3Packages.pandas/python3Packages.numba", "python3Packages.matplotlib"},
	{"shell/python3Packages.django/postgresql", "redis"},
	{"nodejs/yarn", "git"},
	{"go/git/gnumake", "gopls"},
	{"openjdk/maven", "gradle"},
	{"gradle/git", "kotlin"},
	{"nginx", "curl"},
	{"redis/postgresql", "python3Packages.psycopg2"},
	{"shell/vim/tmux/ripgrep/fd", "bat"},
	{"kubectl/kubernetes-helm/jq", "awscli2"},
	{"terraform/awscli2", "ansible"},
	{"clang/cmake/gnumake", "python3"},
	{"ffmpeg/imagemagick", "python3Packages.pillow"},
	{"python3Packages.pandas/python3Packages.matplotlib", "python3Packages.jupyterlab"},
}

// Nixery's thresholds for a big path (NAR size) and a popular one, by which
// the package set is described.
const (
	bigPathSize  = 100 * 1000 * 1000
	popularCount = 100
)

// Targets for nixport's figures.
const (
	maxStoredRatio   = 1.05 // stored bytes / unique bytes
	maxRedownloadPct = 5    // re-download over the new paths, in percent
)

func main() {
	detail := flag.Bool("detail", false, "also print, for nixport, the store paths held by more than one stored layer and the layers each image downloads again")
	flag.Parse()
	if err := run(*detail); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// layer is a group of store paths (sorted) and its size.
type layer struct {
	paths []string
	size  int64
}

func (l layer) key() string { return strings.Join(l.paths, "\n") }

// strategy groups a closure into layers.
type strategy struct {
	name    string
	targets bool // nixport's: print the targets beside its figures
	group   func(g layers.Graph) ([]layer, error)
}

func run(detail bool) error {
	start := time.Now()
	ctx := context.Background()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)

	// The driver reads a package set from a directory's default.nix.
	src, err := os.ReadFile(filepath.Join("bench", "layers", "pkgs.nix"))
	if err != nil {
		return fmt.Errorf("%w (run from the repository root)", err)
	}
	dir, err := os.MkdirTemp("", "nixport-bench-layers")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), src, 0o644); err != nil {
		return err
	}
	driver, err := nix.New(nix.Options{
		Source:    config.PackageSource{Kind: config.SourcePath, Value: dir},
		Timeout:   time.Hour,
		NixConfig: "max-jobs = 2",
		Log:       log,
	})
	if err != nil {
		return err
	}
	defer driver.Close()
	// Image names build for x86_64-linux unless they start with arm64, and
	// the set builds for the host only.
	system, prefix := nixsource.SystemAMD64, ""
	if runtime.GOARCH == "arm64" {
		system, prefix = nixsource.SystemARM64, "arm64/"
	}

	// Realise the whole set: its graph gives the popularity data.
	names, err := packageNames(ctx, filepath.Join(dir, "default.nix"))
	if err != nil {
		return err
	}
	realiseStart := time.Now()
	all, err := driver.Build(ctx, nix.LatestTag, system, names)
	if err != nil {
		return fmt.Errorf("realising the package set: %w", err)
	}
	realiseTime := time.Since(realiseStart)
	defer all.Release()
	pop, err := popcount(ctx, all.Resolution.OutputPaths())
	if err != nil {
		return err
	}
	set := toGraph(all)

	// The corpus, and each image with one package added.
	read := func(name string) (layers.Graph, error) {
		req, err := nixsource.ParseImageName(prefix+name, nixsource.DefaultNameOptions())
		if err != nil {
			return layers.Graph{}, err
		}
		img, err := driver.Build(ctx, nix.LatestTag, req.System, req.Packages)
		if err != nil {
			return layers.Graph{}, fmt.Errorf("image %s: %w", name, err)
		}
		defer img.Release()
		return toGraph(img), nil
	}
	olds := make([]layers.Graph, len(corpus))
	news := make([]layers.Graph, len(corpus))
	for i, im := range corpus {
		if olds[i], err = read(im.name); err != nil {
			return err
		}
		if news[i], err = read(im.name + "/" + im.add); err != nil {
			return err
		}
	}

	strategies := []strategy{
		{"nixport (popcount data)", true, func(g layers.Graph) ([]layer, error) { return nixport(g, pop) }},
		{"nixport (no popularity data)", true, func(g layers.Graph) ([]layer, error) { return nixport(g, nil) }},
		{"one layer per image", false, single},
		{"Nixery (port of its layers.go)", false, func(g layers.Graph) ([]layer, error) { return nixeryGroup(g, pop, nixeryBudget), nil }},
	}

	type figures struct {
		stored     int64
		maxLayers  int
		re         []int64 // per image
		worstRatio float64
		worst      int // image index
		meanRe     float64
		oldL, newL [][]layer // per image
	}
	figs := make([]figures, len(strategies))
	uniquePaths := map[string]int64{}
	for _, c := range olds {
		for p, info := range c.Paths {
			uniquePaths[p] = info.Size
		}
	}
	var unique int64
	for _, s := range uniquePaths {
		unique += s
	}
	newPaths := make([]int64, len(corpus))
	for i := range corpus {
		for p, info := range news[i].Paths {
			if _, ok := olds[i].Paths[p]; !ok {
				newPaths[i] += info.Size
			}
		}
		if newPaths[i] == 0 {
			return fmt.Errorf("corpus: adding %s to %s adds no store path: choose another package", corpus[i].add, corpus[i].name)
		}
	}
	for si, s := range strategies {
		f := &figs[si]
		stored := map[string]int64{}
		f.re = make([]int64, len(corpus))
		f.oldL = make([][]layer, len(corpus))
		f.newL = make([][]layer, len(corpus))
		f.worst = -1
		for i := range corpus {
			oldL, err := s.group(olds[i])
			if err != nil {
				return fmt.Errorf("%s, %s: %w", s.name, corpus[i].name, err)
			}
			newL, err := s.group(news[i])
			if err != nil {
				return fmt.Errorf("%s, %s/%s: %w", s.name, corpus[i].name, corpus[i].add, err)
			}
			f.oldL[i], f.newL[i] = oldL, newL
			have := map[string]bool{}
			for _, l := range oldL {
				stored[l.key()] = l.size
				have[l.key()] = true
			}
			f.maxLayers = max(f.maxLayers, len(oldL), len(newL))
			for _, l := range newL {
				if !have[l.key()] {
					f.re[i] += l.size
				}
			}
			r := float64(f.re[i]) / float64(newPaths[i])
			if f.worst < 0 || r > f.worstRatio {
				f.worstRatio, f.worst = r, i
			}
			f.meanRe += float64(f.re[i]) / float64(len(corpus))
		}
		for _, sz := range stored {
			f.stored += sz
		}
	}
	var meanNew float64
	for _, n := range newPaths {
		meanNew += float64(n) / float64(len(corpus))
	}

	// The package set and the corpus.
	var setSize int64
	var big []string
	for p, info := range set.Paths {
		setSize += info.Size
		if info.Size > bigPathSize {
			big = append(big, fmt.Sprintf("%s (%s)", storeName(p), mb(info.Size)))
		}
	}
	slices.Sort(big)
	var popular []string
	for name, n := range pop {
		if n >= popularCount {
			popular = append(popular, fmt.Sprintf("%s (%d)", name, n))
		}
	}
	slices.Sort(popular)
	minPaths, maxPaths, overBudget := 1<<30, 0, 0
	for _, c := range olds {
		n := len(c.Paths)
		minPaths, maxPaths = min(minPaths, n), max(maxPaths, n)
		if n > layers.DefaultBudget {
			overBudget++
		}
	}
	fmt.Printf("\npackage set bench/layers/pkgs.nix: %d names, %d store paths, %s (NAR); longest reference chain %d paths\n",
		len(names), len(set.Paths), gb(setSize), longestChain(set))
	fmt.Printf("  over %s: %s\n", mb(bigPathSize), strings.Join(big, ", "))
	fmt.Printf("  realised in %.1fs (resolve and nix-store --realise of the whole set; about 1s when it is already in the store)\n", realiseTime.Seconds())
	fmt.Printf("  popularity (Nixery's popcount over the set: direct referrers, self-references included): %d paths counted, at least %d: %s\n",
		len(pop), popularCount, strings.Join(popular, ", "))
	fmt.Printf("corpus: %d images (base packages cacert and iana-etc in each), %d to %d store paths, %d over the budget of %d paths; %s of unique store paths\n",
		len(corpus), minPaths, maxPaths, overBudget, layers.DefaultBudget, gb(unique))
	fmt.Printf("sizes are NAR sizes (uncompressed); a layer is identified by its exact set of store paths; customisation layers not counted\n")

	fmt.Printf("\n1. storage for the %d images: bytes stored / bytes of unique store paths\n\n", len(corpus))
	fmt.Printf("%-32s %10s %8s %11s  %s\n", "strategy", "stored", "ratio", "max layers", "target")
	for si, s := range strategies {
		f := figs[si]
		r := float64(f.stored) / float64(unique)
		t := ""
		if s.targets {
			t = fmt.Sprintf("<= %.2f %s", maxStoredRatio, metMissed(r <= maxStoredRatio))
		}
		fmt.Printf("%-32s %10s %8.3f %11d  %s\n", s.name, gb(f.stored), r, f.maxLayers, t)
	}

	fmt.Printf("\n2. adding one package to a pulled image (each image of the corpus, the package named below):\n")
	fmt.Printf("   bytes of layers the client lacks, against the bytes of the store paths the package adds (mean %s)\n\n", mb(int64(meanNew)))
	fmt.Printf("%-32s %10s %9s %10s %7s  %s\n", "strategy", "mean", "mean/new", "worst/new", "(image)", "target")
	for si, s := range strategies {
		f := figs[si]
		t := ""
		if s.targets {
			t = fmt.Sprintf("<= 1.%02d %s", maxRedownloadPct, metMissed(f.worstRatio <= 1+maxRedownloadPct/100.0))
		}
		fmt.Printf("%-32s %10s %9.2f %10.2f %7s  %s\n", s.name, mb(int64(f.meanRe)), f.meanRe/meanNew, f.worstRatio,
			fmt.Sprintf("#%d", f.worst+1), t)
	}

	fmt.Printf("\nper image: store paths before -> after, MB of the new paths, MB downloaded again by strategy\n\n")
	fmt.Printf("%3s %10s %8s", "#", "paths", "new")
	for _, s := range strategies {
		fmt.Printf(" %9s", shortName(s.name))
	}
	fmt.Printf("  %s\n", "image + added package")
	for i, im := range corpus {
		fmt.Printf("%3d %10s %8.1f", i+1, fmt.Sprintf("%d->%d", len(olds[i].Paths), len(news[i].Paths)), float64(newPaths[i])/1e6)
		for si := range strategies {
			fmt.Printf(" %9.1f", float64(figs[si].re[i])/1e6)
		}
		fmt.Printf("  %s + %s\n", im.name, im.add)
	}
	if detail {
		f := figs[0]
		printDetail(strategies[0].name, f.oldL, f.newL, olds, newPaths)
	}
	fmt.Printf("\ntotal time %.1fs\n", time.Since(start).Seconds())
	return nil
}

// printDetail explains a strategy's figures: which store paths storage
// holds more than once and in which layers, and which layers each image
// whose re-download exceeds the target downloads again.
func printDetail(name string, oldL, newL [][]layer, olds []layers.Graph, newPaths []int64) {
	type stored struct {
		layer
		images []int
	}
	byKey := map[string]*stored{}
	var keys []string
	for i, ls := range oldL {
		for _, l := range ls {
			s, ok := byKey[l.key()]
			if !ok {
				s = &stored{layer: l}
				byKey[l.key()] = s
				keys = append(keys, l.key())
			}
			s.images = append(s.images, i+1)
		}
	}
	holders := map[string][]*stored{}
	for _, k := range keys {
		for _, p := range byKey[k].paths {
			holders[p] = append(holders[p], byKey[k])
		}
	}
	size := map[string]int64{}
	for _, c := range olds {
		for p, info := range c.Paths {
			size[p] = info.Size
		}
	}
	var dup []string
	var extra int64
	for p, hs := range holders {
		if len(hs) > 1 {
			dup = append(dup, p)
			extra += size[p] * int64(len(hs)-1)
		}
	}
	slices.SortFunc(dup, func(a, b string) int {
		ea, eb := size[a]*int64(len(holders[a])-1), size[b]*int64(len(holders[b])-1)
		if ea != eb {
			return int(min(max(eb-ea, -1), 1))
		}
		return strings.Compare(a, b)
	})
	describe := func(l layer) string {
		names := make([]string, 0, 3)
		for _, p := range l.paths[:min(3, len(l.paths))] {
			names = append(names, storeName(p))
		}
		more := ""
		if len(l.paths) > 3 {
			more = fmt.Sprintf(" +%d", len(l.paths)-3)
		}
		noun := "paths"
		if len(l.paths) == 1 {
			noun = "path"
		}
		return fmt.Sprintf("%d %s, %s: %s%s", len(l.paths), noun, mb(l.size), strings.Join(names, " "), more)
	}
	fmt.Printf("\n%s in detail (images numbered in corpus order from 1)\n", name)
	fmt.Printf("\nstore paths held by more than one stored layer: %d, %s stored more than once; the largest:\n", len(dup), mb(extra))
	for _, p := range dup[:min(12, len(dup))] {
		fmt.Printf("  %s (%s) in %d layers:\n", storeName(p), mb(size[p]), len(holders[p]))
		for _, h := range holders[p] {
			fmt.Printf("    images %v: %s\n", h.images, describe(h.layer))
		}
	}
	for i := range oldL {
		have := map[string]bool{}
		for _, l := range oldL[i] {
			have[l.key()] = true
		}
		var re int64
		var lacking []layer
		for _, l := range newL[i] {
			if !have[l.key()] {
				re += l.size
				lacking = append(lacking, l)
			}
		}
		if float64(re) <= float64(newPaths[i])*(1+maxRedownloadPct/100.0) {
			continue
		}
		fmt.Printf("\nimage %d, %s + %s: %d -> %d layers; downloads %s again for %s of new paths, in %d layers:\n",
			i+1, corpus[i].name, corpus[i].add, len(oldL[i]), len(newL[i]), mb(re), mb(newPaths[i]), len(lacking))
		slices.SortFunc(lacking, func(a, b layer) int { return int(min(max(b.size-a.size, -1), 1)) })
		for _, l := range lacking {
			var fresh int
			for _, p := range l.paths {
				if _, ok := olds[i].Paths[p]; !ok {
					fresh++
				}
			}
			fmt.Printf("  %d new: %s\n", fresh, describe(l))
		}
	}
}

// nixport groups g as nixport does (builder/nixsource.go).
func nixport(g layers.Graph, pop map[string]int) ([]layer, error) {
	groups, err := layers.Group(g, pop, layers.DefaultBudget)
	if err != nil {
		return nil, err
	}
	out := make([]layer, len(groups))
	for i, l := range groups {
		out[i] = layer{paths: l.Paths, size: l.Size}
	}
	return out, nil
}

// single puts the whole closure in one layer.
func single(g layers.Graph) ([]layer, error) {
	var l layer
	for p, info := range g.Paths {
		l.paths = append(l.paths, p)
		l.size += info.Size
	}
	slices.Sort(l.paths)
	return []layer{l}, nil
}

// toGraph is what nixsource.Source hands to layers.Group.
func toGraph(img *nix.Image) layers.Graph {
	g := layers.Graph{Roots: img.Resolution.OutputPaths(), Paths: make(map[string]layers.PathInfo, len(img.Closure.Paths))}
	for _, p := range img.Closure.Paths {
		g.Paths[p.Path] = layers.PathInfo{Size: p.NarSize, References: p.References}
	}
	return g
}

// packageNames lists the attribute paths of every package of the set at
// file: top-level derivations and the derivations of top-level sets
// (python3Packages.requests, xorg.libX11).
func packageNames(ctx context.Context, file string) ([]string, error) {
	const expr = `{ file }:
let
  pkgs = import file { };
  isDrv = v: builtins.isAttrs v && (v.type or null) == "derivation";
in
builtins.concatLists (map (n:
  let v = pkgs.${n}; in
  if isDrv v then [ n ]
  else if builtins.isAttrs v then map (m: "${n}.${m}") (builtins.filter (m: isDrv v.${m}) (builtins.attrNames v))
  else [ ]) (builtins.attrNames pkgs))`
	cmd := exec.CommandContext(ctx, "nix-instantiate", "--eval", "--strict", "--json", "--expr", expr, "--argstr", "file", file)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the package set: %w", err)
	}
	var names []string
	if err := json.Unmarshal(out, &names); err != nil {
		return nil, fmt.Errorf("listing the package set: %w", err)
	}
	return names, nil
}

// popcount counts popularity as Nixery's popcount does over a channel:
// for every store path of the set, each path it references (itself
// included, as Nix lists it) gains one, keyed by store path name without
// the hash; then names counted once (only their own self-reference) are
// dropped. It reads the references from nix path-info directly, because
// nix.Closure drops self-references.
func popcount(ctx context.Context, roots []string) (map[string]int, error) {
	args := append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json", "--recursive", "--"}, roots...)
	cmd := exec.CommandContext(ctx, "nix", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix path-info: %w", err)
	}
	type entry struct {
		Path       string   `json:"path"`
		References []string `json:"references"`
	}
	var entries []entry
	if err := json.Unmarshal(out, &entries); err != nil {
		// Nix 2.19 and later: an object keyed by store path.
		var m map[string]*entry
		if err2 := json.Unmarshal(out, &m); err2 != nil {
			return nil, errors.Join(err, err2)
		}
		for p, e := range m {
			if e != nil {
				e.Path = p
				entries = append(entries, *e)
			}
		}
	}
	counts := map[string]int{}
	for _, e := range entries {
		for _, r := range e.References {
			counts[storeName(r)]++
		}
	}
	for k, v := range counts {
		if v == 1 {
			delete(counts, k)
		}
	}
	return counts, nil
}

// storeName is a store path's last element without the hash.
func storeName(p string) string {
	p = p[strings.LastIndexByte(p, '/')+1:]
	if i := strings.IndexByte(p, '-'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// longestChain is the number of paths on the longest reference chain.
func longestChain(g layers.Graph) int {
	depth := map[string]int{}
	var visit func(p string) int
	visit = func(p string) int {
		if d, ok := depth[p]; ok {
			return d
		}
		depth[p] = 1 // a cycle, if any, stops here
		d := 1
		for _, r := range g.Paths[p].References {
			if r != p {
				d = max(d, 1+visit(r))
			}
		}
		depth[p] = d
		return d
	}
	best := 0
	for p := range g.Paths {
		best = max(best, visit(p))
	}
	return best
}

func metMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
func gb(n int64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }

func shortName(s string) string {
	switch {
	case strings.HasPrefix(s, "nixport (popcount"):
		return "nixport"
	case strings.HasPrefix(s, "nixport (no"):
		return "np-nopop"
	case strings.HasPrefix(s, "one layer"):
		return "single"
	default:
		return "Nixery"
	}
}
