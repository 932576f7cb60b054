package storage

import (
	"fmt"
	"strings"
)

// Bounds on object names. A component must fit a file name on every common
// filesystem (NAME_MAX is 255); the whole name is kept well below PATH_MAX
// so that a root directory plus the name still fits, and, with a short
// prefix, within GCS's 1024-byte limit on object names.
const (
	MaxObjectNameLen    = 1000
	MaxNameComponentLen = 255
)

// ValidObjectName accepts slash-separated relative paths whose components
// use only [A-Za-z0-9._:+@=-], are not empty, and are not "." or "..". Such
// a name is its own clean relative path, so a backend keeping objects in a
// directory tree can only reach something under its objects directory, and
// a flat store (GCS) gets the same names as the tree. Every backend
// validates object and lease names with it, so a name accepted by one is
// accepted by all. Errors wrap ErrInvalidName.
func ValidObjectName(name string) error {
	if name == "" {
		return invalidName(name, "empty")
	}
	if len(name) > MaxObjectNameLen {
		return invalidName(name, fmt.Sprintf("longer than %d bytes", MaxObjectNameLen))
	}
	for component := range strings.SplitSeq(name, "/") {
		switch {
		case component == "":
			return invalidName(name, "empty path component (leading, trailing or double slash)")
		case component == "." || component == "..":
			return invalidName(name, fmt.Sprintf("path component %q", component))
		case len(component) > MaxNameComponentLen:
			return invalidName(name, fmt.Sprintf("path component longer than %d bytes", MaxNameComponentLen))
		}
		for i := 0; i < len(component); i++ {
			if !isNameByte(component[i]) {
				return invalidName(name, fmt.Sprintf("character %q not allowed", component[i]))
			}
		}
	}
	return nil
}

// ValidObjectPrefix accepts what ListObjects takes: "" for every object, or
// a valid object name followed by "/". Errors wrap ErrInvalidName.
func ValidObjectPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	trimmed, ok := strings.CutSuffix(prefix, "/")
	if !ok {
		return invalidName(prefix, `a prefix must be empty or end in "/"`)
	}
	return ValidObjectName(trimmed)
}

func isNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._:+@=-", c) >= 0
}

func invalidName(name, reason string) error {
	const maxShown = 80 // keep a hostile name from flooding logs
	if len(name) > maxShown {
		name = name[:maxShown] + "..."
	}
	return fmt.Errorf("object name %q: %s: %w", name, reason, ErrInvalidName)
}
