package prewarm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nixport/nixport/reference"
)

// Ref is one image to prewarm: a repository name and a tag, and the line
// of the input that named it.
type Ref struct {
	Name string
	Tag  string
	Line int
}

func (r Ref) String() string { return r.Name + ":" + r.Tag }

// defaultTag is the tag of a reference that names none, as for a pull.
const defaultTag = "latest"

// maxLine bounds a line of the input: far above the longest reference
// (reference.MaxNameLength, ":", reference.MaxTagLength), with room for a
// comment.
const maxLine = 64 << 10

// readRefs reads image references, one per line ("shell/git/htop:latest";
// no tag means latest). Blank lines and comments ("#" to the end of the
// line) are ignored, and a reference named twice is kept once. Every
// invalid line is reported, each as "file:line: problem" on a line of its
// own, so that all of them can be mended at once.
func readRefs(file string, r io.Reader) ([]Ref, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	var refs []Ref
	var problems []error
	seen := map[string]bool{}
	n := 0
	for sc.Scan() {
		n++
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		ref, err := parseRef(text)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s:%d: %w", file, n, err))
			continue
		}
		ref.Line = n
		if !seen[ref.String()] {
			seen[ref.String()] = true
			refs = append(refs, ref)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line longer than %d bytes", maxLine)
		}
		problems = append(problems, fmt.Errorf("%s:%d: %w", file, n+1, err))
	}
	return refs, errors.Join(problems...)
}

// parseRef checks one reference with the grammar the registry checks
// pulls with (package reference).
func parseRef(s string) (Ref, error) {
	name, tag := s, defaultTag
	// A tag follows the last ':' unless a '/' does (that ':' is a port).
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "/") {
		name, tag = s[:i], s[i+1:]
	}
	switch {
	case strings.ContainsAny(s, " \t"):
		return Ref{}, fmt.Errorf("%q: one image reference per line", s)
	case strings.Contains(name, "@"):
		return Ref{}, fmt.Errorf("%q: a digest names an image already built; give a name and a tag (shell/git:latest)", s)
	case strings.Contains(name, ":"):
		return Ref{}, fmt.Errorf("%q: the registry's host is not part of the name; give the image's path (shell/git) and the server with -server", s)
	}
	if err := reference.CheckName(name); err != nil {
		return Ref{}, fmt.Errorf("invalid name %q: %v", name, err)
	}
	if !reference.ValidTag(tag) {
		return Ref{}, fmt.Errorf("invalid tag %q: up to %d letters, digits, '_', '.' and '-', not starting with '.' or '-'", tag, reference.MaxTagLength)
	}
	return Ref{Name: name, Tag: tag}, nil
}
