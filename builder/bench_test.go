package builder

import (
	"context"
	"testing"
	"time"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/source/nixsource"
)

// BenchmarkManifestByTagWarm is the builder's share of a warm manifest GET
// by tag: the image is built and cached.
func BenchmarkManifestByTagWarm(b *testing.B) {
	src := &nixLikeSource{countingSource: countingSource{}}
	t := &testing.T{}
	bl := newTestBuilder(t, &src.countingSource, Options{MovingTagTTL: time.Hour})
	bl.opts.Source = src
	ctx := context.Background()
	if _, _, err := bl.ManifestByTag(ctx, "shell/git/htop", "latest", manifest.OCI); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := bl.ManifestByTag(ctx, "shell/git/htop", "latest", manifest.OCI); err != nil {
			b.Fatal(err)
		}
	}
}

// nixLikeSource identifies names the way the Nix source does.
type nixLikeSource struct{ countingSource }

func (s *nixLikeSource) Identify(name, tag string) (source.Request, error) {
	req, err := nixsource.ParseImageName(name, nixsource.DefaultNameOptions())
	if err != nil {
		return source.Request{}, err
	}
	return source.Request{Name: name, Tag: tag, Key: req.Key() + "|" + tag}, nil
}
