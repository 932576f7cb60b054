// Command build measures the image build pipeline and prints a comparison
// in one run (issue 4):
//
//   - a cold build of a large generated closure (its paths already
//     realised) into empty storage, against `tar -c PATHS | pigz -p 2` of
//     the same paths (target: at most 1.2x);
//   - adding one package to an already built image: how many bytes are
//     compressed, against the whole image.
//
// Run it from the repository root: go run ./bench/build
package main

import (
	"context"
	_ "crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/source/nixsource"
	"github.com/nixport/nixport/storage/filesystem"
)

func main() {
	runs := flag.Int("runs", 3, "repetitions of each measurement (best is kept)")
	flag.Parse()
	if err := run(*runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(runs int) error {
	ctx := context.Background()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	driver, err := nix.New(nix.Options{Log: log})
	if err != nil {
		return err
	}
	defer driver.Close()

	// Realise the closure first: the benchmark is about archiving.
	img, err := driver.Build(ctx, nix.LatestTag, "x86_64-linux", []string{"bigclosure"})
	if err != nil {
		return err
	}
	var paths []string
	var narSize int64
	for _, p := range img.Closure.Paths {
		paths = append(paths, p.Path)
		narSize += p.NarSize
	}
	img.Release()

	best := func(f func() (time.Duration, error)) (time.Duration, error) {
		var min time.Duration
		for i := 0; i < runs; i++ {
			d, err := f()
			if err != nil {
				return 0, err
			}
			if i == 0 || d < min {
				min = d
			}
		}
		return min, nil
	}

	pigz, err := best(func() (time.Duration, error) {
		start := time.Now()
		cmd := exec.Command("sh", append([]string{"-c", `tar -cPf - "$@" | pigz -p 2 >/dev/null`, "sh"}, paths...)...)
		cmd.Stderr = os.Stderr
		err := cmd.Run()
		return time.Since(start), err
	})
	if err != nil {
		return fmt.Errorf("tar | pigz: %w", err)
	}

	var stats *nixsource.Stats
	nixport, err := best(func() (time.Duration, error) {
		dir, err := os.MkdirTemp("", "nixport-bench")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		src, err := newSource(driver, dir, log)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		if _, err := source.BuildOnce(ctx, src, "bigclosure", nix.LatestTag); err != nil {
			return 0, err
		}
		stats = src.Stats()
		return time.Since(start), nil
	})
	if err != nil {
		return fmt.Errorf("nixport build: %w", err)
	}

	// Adding one package to a built image.
	dir, err := os.MkdirTemp("", "nixport-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src, err := newSource(driver, dir, log)
	if err != nil {
		return err
	}
	base := "big.p02/big.p03/big.p04/big.p05/big.p06/big.p07/big.p08/big.p09/big.p10"
	if _, err := source.BuildOnce(ctx, src, base, nix.LatestTag); err != nil {
		return err
	}
	baseBytes := src.Stats().BytesArchived.Load()
	baseLayers := src.Stats().LayersArchived.Load()
	start := time.Now()
	if _, err := source.BuildOnce(ctx, src, base+"/big.p11", nix.LatestTag); err != nil {
		return err
	}
	addTime := time.Since(start)
	addBytes := src.Stats().BytesArchived.Load() - baseBytes
	addLayers := src.Stats().LayersArchived.Load() - baseLayers

	fmt.Printf("\nclosure: %d store paths, %.1f MB (NAR)\n\n", len(paths), float64(narSize)/1e6)
	fmt.Printf("%-44s %12s %12s %8s %8s\n", "measurement", "nixport", "tar|pigz -p2", "ratio", "target")
	fmt.Printf("%-44s %11.2fs %11.2fs %8.2f %8s\n", "cold build, large closure (realised)", nixport.Seconds(), pigz.Seconds(), nixport.Seconds()/pigz.Seconds(), "<=1.20")
	fmt.Printf("  (%d layers archived, %.1f MB of tar compressed)\n", stats.LayersArchived.Load(), float64(stats.BytesArchived.Load())/1e6)
	fmt.Printf("\nadding big.p11 to an image of big.p02..p10: %.2fs, %d layers and %.2f MB compressed (the image without it: %.1f MB)\n",
		addTime.Seconds(), addLayers, float64(addBytes)/1e6, float64(baseBytes)/1e6)
	return nil
}

func newSource(driver *nix.Driver, dir string, log logrus.FieldLogger) (*nixsource.Source, error) {
	store, err := filesystem.New(dir, log)
	if err != nil {
		return nil, err
	}
	return nixsource.New(nixsource.Options{Driver: driver, Storage: store, Log: log, Names: nixsource.DefaultNameOptions()})
}
