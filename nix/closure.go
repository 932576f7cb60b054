package nix

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
)

// Closure is a runtime closure: every store path the roots need at run
// time, with the references between them. layers/ and builder/ consume it;
// nothing outside this package reads Nix's output.
type Closure struct {
	// Roots are the paths asked for (an image's outputs), sorted.
	Roots []string
	// Paths are every path of the closure, roots included, sorted by Path.
	Paths []PathInfo
}

// PathInfo is one store path of a closure.
type PathInfo struct {
	Path string
	// NarSize is the size of the path's NAR serialisation: close to its
	// uncompressed size in a tar layer.
	NarSize int64
	// NarHash is Nix's hash of the NAR, as Nix prints it (e.g.
	// "sha256-…" in SRI form, or "sha256:…" base-32 in older versions).
	NarHash string
	// References are the other paths this one refers to, sorted, without
	// the path itself.
	References []string
	// Deriver is the derivation that built the path, as the store
	// records it, or "" (a path added to the store, or not recorded).
	Deriver string
}

// Index returns the position of path in c.Paths, or -1.
func (c *Closure) Index(path string) int {
	i := sort.Search(len(c.Paths), func(i int) bool { return c.Paths[i].Path >= path })
	if i < len(c.Paths) && c.Paths[i].Path == path {
		return i
	}
	return -1
}

// NarSize is the sum of every path's NarSize.
func (c *Closure) NarSize() int64 {
	var n int64
	for _, p := range c.Paths {
		n += p.NarSize
	}
	return n
}

// Closure reads the runtime closure of paths (realised store paths, such as
// Resolution.OutputPaths) in one nix path-info --json --recursive call.
func (d *Driver) Closure(ctx context.Context, paths []string) (*Closure, error) {
	roots := sortedUnique(paths)
	if len(roots) == 0 {
		return &Closure{Roots: []string{}, Paths: []PathInfo{}}, nil
	}
	for _, p := range roots {
		if !storePathPattern.MatchString(p) {
			return nil, fmt.Errorf("nix: closure of %q: not a store path", p)
		}
	}
	log := d.log.WithFields(logrus.Fields{"op": "closure", "roots": len(roots)})
	args := append([]string{"path-info", "--json", "--recursive", "--"}, roots...)
	r, err := d.run(ctx, log, "nix", args...)
	if err != nil {
		return nil, err
	}
	if r.ExitCode != 0 {
		return nil, fmt.Errorf("nix: reading the closure: nix path-info exited with code %d: %s", r.ExitCode, firstError(r.Tail))
	}
	c, err := parsePathInfo(r.Stdout, roots)
	if err != nil {
		return nil, fmt.Errorf("nix: reading the closure: %w", err)
	}
	return c, nil
}

// pathInfoJSON is one entry of nix path-info --json.
type pathInfoJSON struct {
	Path       string   `json:"path"`
	Valid      *bool    `json:"valid"`
	NarHash    string   `json:"narHash"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
}

// parsePathInfo reads nix path-info --json output: a JSON array of objects
// with a "path" field (Nix up to 2.18), or an object keyed by store path
// (Nix 2.19 and later, where an invalid path's value is null). Nix 2.8
// lists an invalid path with "valid": false and exits 0.
func parsePathInfo(data []byte, roots []string) (*Closure, error) {
	var entries []pathInfoJSON
	data = bytes.TrimSpace(data)
	switch {
	case len(data) > 0 && data[0] == '[':
		if err := json.Unmarshal(data, &entries); err != nil {
			return nil, err
		}
	case len(data) > 0 && data[0] == '{':
		var m map[string]*pathInfoJSON
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		for p, e := range m {
			if e == nil {
				f := false
				e = &pathInfoJSON{Valid: &f}
			}
			e.Path = p
			entries = append(entries, *e)
		}
	default:
		return nil, fmt.Errorf("unexpected output %.40q", data)
	}

	c := &Closure{Roots: append([]string(nil), roots...), Paths: make([]PathInfo, 0, len(entries))}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Path == "" {
			return nil, fmt.Errorf("an entry has no path")
		}
		if e.Valid != nil && !*e.Valid {
			return nil, fmt.Errorf("%s is not a valid store path (not built?)", e.Path)
		}
		if seen[e.Path] {
			continue
		}
		seen[e.Path] = true
		refs := make([]string, 0, len(e.References))
		for _, r := range e.References {
			if r != e.Path {
				refs = append(refs, r)
			}
		}
		deriver := e.Deriver
		if !storePathPattern.MatchString(deriver) || !strings.HasSuffix(deriver, ".drv") {
			deriver = ""
		}
		c.Paths = append(c.Paths, PathInfo{Path: e.Path, NarSize: e.NarSize, NarHash: e.NarHash, References: sortedUnique(refs), Deriver: deriver})
	}
	sort.Slice(c.Paths, func(i, j int) bool { return c.Paths[i].Path < c.Paths[j].Path })
	for _, p := range c.Paths {
		for _, r := range p.References {
			if !seen[r] {
				return nil, fmt.Errorf("%s refers to %s, which is not in the closure", p.Path, r)
			}
		}
	}
	for _, r := range roots {
		if !seen[r] {
			return nil, fmt.Errorf("root %s is missing from the closure", r)
		}
	}
	return c, nil
}

// NarSHA256 is the path's NAR hash as 64 lower-case hex digits, whatever
// form Nix printed it in: SRI ("sha256-" and base64, Nix 2.4 and later) or
// "sha256:" and Nix's base-32 or hex (older versions). ok is false for
// another algorithm or a malformed hash.
func (p PathInfo) NarSHA256() (sum string, ok bool) {
	var raw []byte
	switch {
	case strings.HasPrefix(p.NarHash, "sha256-"):
		b, err := base64.StdEncoding.DecodeString(p.NarHash[len("sha256-"):])
		if err != nil {
			return "", false
		}
		raw = b
	case strings.HasPrefix(p.NarHash, "sha256:"):
		s := p.NarHash[len("sha256:"):]
		if len(s) == 64 {
			b, err := hex.DecodeString(s)
			if err != nil {
				return "", false
			}
			raw = b
		} else {
			b, ok := decodeNix32(s, sha256.Size)
			if !ok {
				return "", false
			}
			raw = b
		}
	default:
		return "", false
	}
	if len(raw) != sha256.Size {
		return "", false
	}
	return hex.EncodeToString(raw), true
}

// nix32Alphabet is the alphabet of Nix's base-32 (no e, o, u, t).
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// decodeNix32 decodes Nix's base-32 encoding of a size-byte hash: the
// last character holds the lowest bits, and the bits run from the end
// of the string to its start (libutil's hash.cc).
func decodeNix32(s string, size int) ([]byte, bool) {
	if len(s) != (size*8-1)/5+1 {
		return nil, false
	}
	out := make([]byte, size)
	for n := 0; n < len(s); n++ {
		digit := strings.IndexByte(nix32Alphabet, s[len(s)-n-1])
		if digit < 0 {
			return nil, false
		}
		b := n * 5
		i, j := b/8, b%8
		out[i] |= byte(digit << j)
		if i+1 < size {
			out[i+1] |= byte(digit >> (8 - j))
		} else if digit>>(8-j) != 0 {
			return nil, false
		}
	}
	return out, true
}
