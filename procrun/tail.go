package procrun

import (
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// ansiEscape matches a terminal colour (or cursor) code, which programs
// such as Nix print even into a pipe.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// Lines are the lines of a process's output that say something: without
// colour codes, trailing blanks and blank lines, and without those drop
// reports (nil: none), which gets each line so cleaned.
func Lines(output string, drop func(line string) bool) []string {
	var out []string
	for _, l := range strings.Split(ansiEscape.ReplaceAllString(output, ""), "\n") {
		l = strings.TrimRight(l, " \t\r")
		if strings.TrimSpace(l) == "" || drop != nil && drop(l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// LastLines is the last n of Lines(output, drop), one a line: the end of
// a process's output for a log.
func LastLines(output string, n int, drop func(line string) bool) string {
	lines := Lines(output, drop)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ClientTail says how much of the end of a process's output a registry
// client is shown, in an error message: what the program printed last is
// usually why it failed, but a client deserves no whole build log.
type ClientTail struct {
	// Lines bounds the number of lines: the last ones of Lines(output,
	// Drop).
	Lines int
	// LineSize bounds each line, in bytes: a longer one is cut on a
	// character boundary and ends in "…".
	LineSize int
	// Size bounds the whole, in bytes with the newlines: whole lines only.
	Size int
	// Drop, if set, leaves out lines that would mislead or only clutter
	// (see Lines).
	Drop func(line string) bool
}

// DefaultClientTail is what nixport shows a client of a failed process's
// output.
var DefaultClientTail = ClientTail{Lines: 15, LineSize: 300, Size: 2000}

// WithDrop is c leaving out the lines drop reports as well.
func (c ClientTail) WithDrop(drop func(line string) bool) ClientTail {
	if prev := c.Drop; prev != nil {
		c.Drop = func(l string) bool { return prev(l) || drop(l) }
	} else {
		c.Drop = drop
	}
	return c
}

// Of is the end of output within the bounds, one a line; empty when output
// holds nothing to show.
func (c ClientTail) Of(output string) string {
	lines := Lines(output, c.Drop)
	var keep []string
	size := 0
	for i := len(lines) - 1; i >= 0 && len(keep) < c.Lines; i-- {
		l := cutLine(lines[i], c.LineSize)
		if size+len(l)+1 > c.Size {
			break
		}
		size += len(l) + 1
		keep = append(keep, l)
	}
	slices.Reverse(keep)
	return strings.Join(keep, "\n")
}

// Suffix is "; the last lines of WHAT:" and Of(output) on lines of their
// own, to end a message; empty when output holds nothing to show.
func (c ClientTail) Suffix(what, output string) string {
	tail := c.Of(output)
	if tail == "" {
		return ""
	}
	return "; the last lines of " + what + ":\n" + tail
}

// cutLine cuts l to at most size bytes, on a character boundary, with "…"
// at the end when it cut.
func cutLine(l string, size int) string {
	if len(l) <= size {
		return l
	}
	const ellipsis = "…"
	end := max(size-len(ellipsis), 0)
	for end > 0 && !utf8.RuneStart(l[end]) {
		end--
	}
	return strings.ToValidUTF8(l[:end], "") + ellipsis
}
