package manifest

import (
	"strconv"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// negotiate implements Negotiate. Each value may be a comma-separated list
// of media ranges with parameters ("a/b;q=0.5, c/d"). A range with q=0 (or
// an unparsable q) is not accepted. The answer is Docker exactly when the
// client names the Docker schema2 manifest and does not name the OCI
// manifest; anything else (no header, wildcards only, OCI named, neither
// named) gets OCI. Wildcards do not count as naming OCI: a client that lists
// Docker schema2 with a "*/*" fallback prefers Docker.
func negotiate(accept []string) Format {
	var oci, docker bool
	for _, value := range accept {
		// strings.Cut rather than Split: this runs on every manifest GET
		// and should not allocate.
		for more := true; more; {
			var r string
			r, value, more = strings.Cut(value, ",")
			mt, ok := mediaRange(r)
			if !ok {
				continue
			}
			switch mt {
			case v1.MediaTypeImageManifest:
				oci = true
			case DockerManifest:
				docker = true
			}
		}
	}
	if docker && !oci {
		return Docker
	}
	return OCI
}

// mediaRange parses one media range of an Accept header: its media type in
// lower case, and whether the client accepts it (q absent or above 0).
func mediaRange(r string) (string, bool) {
	mt, params, _ := strings.Cut(r, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "" {
		return "", false
	}
	for more := true; more; {
		var p string
		p, params, more = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(q > 0) {
			return mt, false
		}
	}
	return mt, true
}
