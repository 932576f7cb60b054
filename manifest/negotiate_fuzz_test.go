package manifest

import (
	"strings"
	"testing"
)

// FuzzNegotiate feeds arbitrary Accept headers (client input) to Negotiate:
// it never panics, and only a client that names the Docker schema2
// manifest gets Docker.
func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{
		"",
		"*/*",
		DockerManifest,
		DockerManifest + ", application/vnd.oci.image.manifest.v1+json;q=0.5",
		DockerManifest + ";q=0, */*",
		"application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json",
		"APPLICATION/VND.DOCKER.DISTRIBUTION.MANIFEST.V2+JSON ; Q=0.9",
	} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		got := Negotiate([]string{a, b})
		if got == Docker && !strings.Contains(strings.ToLower(a+","+b), DockerManifest) {
			t.Errorf("Docker for %q, %q which do not name it", a, b)
		}
		if got != Negotiate([]string{a, b}) {
			t.Error("not deterministic")
		}
	})
}
