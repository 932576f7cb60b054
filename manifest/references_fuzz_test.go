package manifest

import (
	"testing"

	"github.com/nixport/nixport/reference"
)

// FuzzReferences feeds arbitrary bytes (a manifest a client pushed is
// stored as sent) to References: it never panics, and every digest it
// returns is valid.
func FuzzReferences(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`,
		`{"manifests":[{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}]}`,
		`{"config":null,"layers":null}`,
		`{"layers":[{"digest":"sha256:"}]}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := References(data)
		if err != nil && (len(refs.Blobs) > 0 || len(refs.Manifests) > 0) {
			t.Errorf("an error and references: %v, %+v", err, refs)
		}
		for _, d := range append(refs.Blobs, refs.Manifests...) {
			if err := reference.ValidDigest(d); err != nil {
				t.Errorf("invalid digest %q returned: %v", d, err)
			}
		}
	})
}
