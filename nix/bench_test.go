package nix

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkBuild measures an image of N already-built packages: resolve,
// realise (nothing to build) and closure. It reports Nix processes per
// image, which must stay 3 whatever N.
func BenchmarkBuild(b *testing.B) {
	d, _ := newDriver(b, Options{Source: builtin()})
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("packages=%d", n), func(b *testing.B) {
			names := smallNames(n)
			// Build once so that every package is in the store.
			img, err := d.Build(context.Background(), LatestTag, hostSystem, names)
			if err != nil {
				b.Fatal(err)
			}
			img.Release()
			before := d.ProcessCount()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				img, err := d.Build(context.Background(), LatestTag, hostSystem, names)
				if err != nil {
					b.Fatal(err)
				}
				if len(img.Closure.Paths) != n+1 {
					b.Fatalf("closure of %d paths", len(img.Closure.Paths))
				}
				img.Release()
			}
			b.StopTimer()
			b.ReportMetric(float64(d.ProcessCount()-before)/float64(b.N), "nix-procs/op")
		})
	}
}
