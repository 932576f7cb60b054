// Package reference holds the grammar of registry references that every
// part of nixport must agree on: repository names and tags, as the OCI
// distribution spec defines them. The registry API checks every request
// against it, and the image sources check names before they reach a
// command line; one implementation keeps the two from drifting apart.
//
// The checks are hand-written scanners rather than regular expressions
// because they run on every request.
package reference

// MaxTagLength is the longest tag the distribution spec allows.
const MaxTagLength = 128

// ValidName reports whether name matches the distribution spec's
// repository name grammar
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// Length limits are the caller's: they differ between uses.
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
