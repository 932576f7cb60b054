// Package reference holds the grammar of registry references that every
// part of nixport must agree on: repository names, tags and digests, as the
// OCI distribution spec defines them, and the one bound on a name's length.
// The registry API checks every request against it, the image sources
// check names before they reach a command line, and storage checks digests
// before they become object names; one implementation keeps them from
// drifting apart.
//
// The checks are hand-written scanners rather than regular expressions
// because they run on every request.
package reference

import (
	// A digest is only valid if its algorithm is linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// MaxTagLength is the longest tag the distribution spec allows.
const MaxTagLength = 128

// MaxNameLength and MaxComponentLength bound a repository name. A name,
// with a tag, becomes part of the names of the records kept for it in
// storage ("tags/<name>/_/<tag>"), and every storage backend holds object
// names of up to 1000 bytes with components of up to 255 (package
// storage's MaxObjectNameLen and MaxNameComponentLen): a name within these
// bounds always fits, with room left for longer record prefixes (the
// builder's tests check it). The spec's own suggestion, 255 bytes with the
// host, is too tight for names that list packages.
const (
	MaxNameLength      = 768
	MaxComponentLength = 255
)

// CheckName reports whether name can be a repository name: the spec's
// grammar (ValidName) within MaxNameLength and MaxComponentLength. The
// error says which rule it breaks.
func CheckName(name string) error {
	if len(name) > MaxNameLength {
		return fmt.Errorf("repository name of %d bytes: at most %d", len(name), MaxNameLength)
	}
	for c := range strings.SplitSeq(name, "/") {
		if len(c) > MaxComponentLength {
			return fmt.Errorf("repository name component of %d bytes: at most %d", len(c), MaxComponentLength)
		}
	}
	if !ValidName(name) {
		return errors.New("repository name must be lower-case letters, digits and separators (. _ __ -), components joined by /")
	}
	return nil
}

// CheckComponent reports whether s can be one component of a repository
// name (a push namespace is one): the grammar of a name without "/",
// within MaxComponentLength.
func CheckComponent(s string) error {
	if strings.Contains(s, "/") {
		return errors.New("one component of a repository name holds no /")
	}
	return CheckName(s)
}

// ParseDigest accepts "sha256:<64 hex>" and "sha512:<128 hex>" with
// lower-case hex, as the OCI image spec requires, and nothing else. It is
// a hand-written scanner (it runs on every blob request) that accepts a
// subset of what go-digest's Validate does; the tests hold the two
// together.
func ParseDigest(s string) (digest.Digest, error) {
	alg, hex, ok := strings.Cut(s, ":")
	want := 0
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	}
	if !ok || want == 0 || len(hex) != want || !isLowerHex(hex) {
		return "", fmt.Errorf("invalid digest %q: want sha256:<64 hex> or sha512:<128 hex>", truncate(s))
	}
	d := digest.Digest(s)
	if !d.Algorithm().Available() {
		return "", fmt.Errorf("invalid digest %q: %s is not linked into this binary", truncate(s), alg)
	}
	return d, nil
}

// ValidDigest is ParseDigest for a digest already typed as one (read from
// a manifest or a record).
func ValidDigest(d digest.Digest) error {
	_, err := ParseDigest(string(d))
	return err
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// truncate shortens untrusted text quoted back in an error.
func truncate(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// ValidName reports whether name matches the distribution spec's
// repository name grammar
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// It is the grammar alone; CheckName adds the length bounds.
func ValidName(name string) bool {
	i := 0
	for {
		// A component: alphanumeric runs joined by single separators.
		if i >= len(name) || !isLowerAlnum(name[i]) {
			return false
		}
		for i < len(name) && isLowerAlnum(name[i]) {
			i++
		}
		if i == len(name) {
			return true
		}
		switch name[i] {
		case '/':
			i++
			continue
		case '.':
			i++
		case '_':
			i++
			if i < len(name) && name[i] == '_' {
				i++
			}
		case '-':
			for i < len(name) && name[i] == '-' {
				i++
			}
		default:
			return false
		}
		// After a separator an alphanumeric must follow.
		if i >= len(name) || !isLowerAlnum(name[i]) {
			return false
		}
	}
}

func isLowerAlnum(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
}

// ValidTag reports whether tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidTag(tag string) bool {
	if len(tag) == 0 || len(tag) > MaxTagLength {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
