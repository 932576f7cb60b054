package prewarm

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// display shows the images' progress as updates come.
type display interface {
	// show is called after every update, and every tick.
	show(items []*item, now time.Time)
	// tick is how often show wants calling without an update (the
	// elapsed times move); 0: never.
	tick() time.Duration
}

// plain writes a line for an image each time its state changes, and
// again after every heartbeat without one (so that a log shows a long
// build is followed): for logs (CI), where a line cannot be redrawn.
type plain struct {
	w         io.Writer
	heartbeat time.Duration
	last      map[*item]printedLine
}

type printedLine struct {
	key string    // what the line said, but for the times and progress
	id  string    // the build it named
	at  time.Time // when it was written
}

func (p *plain) tick() time.Duration { return p.heartbeat }

func (p *plain) show(items []*item, now time.Time) {
	if p.last == nil {
		p.last = map[*item]printedLine{}
	}
	var b bytes.Buffer
	for _, it := range items {
		if it.st.State == "" && it.note == "" && !it.final {
			continue // nothing heard yet
		}
		key := fmt.Sprint(it.st.State, it.built, it.final, it.note)
		last, seen := p.last[it]
		if seen && last.key == key && (it.final || p.heartbeat == 0 || now.Sub(last.at) < p.heartbeat) {
			continue
		}
		p.last[it] = printedLine{key: key, id: it.st.ID, at: now}
		b.WriteString(line(it, now, it.st.ID != last.id))
		b.WriteByte('\n')
	}
	p.w.Write(b.Bytes())
}

// live redraws one line per image in place on a terminal. An image that
// is done or failed gets its last line printed above the lines redrawn,
// where it stays; the redrawn lines are those of the images still
// building, as many as the terminal has rows for.
type live struct {
	w       io.Writer
	size    func() (cols, rows int) // the terminal's, asked at each redraw
	drawn   int                     // lines redrawn last time, now above the cursor
	printed map[*item]bool
}

func (l *live) tick() time.Duration { return time.Second }

func (l *live) show(items []*item, now time.Time) {
	if l.printed == nil {
		l.printed = map[*item]bool{}
	}
	cols, rows := l.size()
	// Every line is cut to fit, leaving the last column free (a line
	// that fills it moves the cursor on in some terminals): a line that
	// wrapped would not be where the next redraw goes back to.
	fit := func(s string) string { return truncate(s, cols-1) }
	maxLines := max(rows-1, 2)
	var b bytes.Buffer
	if l.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", l.drawn) // up to the first line drawn
	}
	b.WriteString("\r\x1b[J") // erase from there down
	var building []*item
	for _, it := range items {
		switch {
		case it.final && !l.printed[it]:
			l.printed[it] = true
			b.WriteString(fit(line(it, now, false)) + "\n")
		case !it.final:
			building = append(building, it)
		}
	}
	more := 0
	if len(building) > maxLines {
		building, more = building[:maxLines-1], len(building)-(maxLines-1)
	}
	for _, it := range building {
		b.WriteString(fit(line(it, now, false)) + "\n")
	}
	if more > 0 {
		b.WriteString(fit(fmt.Sprintf("… and %d more", more)) + "\n")
	}
	l.drawn = len(building)
	if more > 0 {
		l.drawn++
	}
	l.w.Write(b.Bytes())
}

// line says where one image is:
//
//	shell/hello:latest  realising  12s  paths 3/7  layers 1/5  1.2 MB
//	shell/hello:latest  done in 14s  paths 7/7  layers 5/5  2.0 MB  sha256:…
//	shell/broken:latest  failed after 3s: the first line of the error
//
// withID adds the build's id after the name.
func line(it *item, now time.Time, withID bool) string {
	var b strings.Builder
	b.WriteString(it.ref.String())
	if withID && it.st.ID != "" {
		fmt.Fprintf(&b, " (build %s)", it.st.ID)
	}
	b.WriteString("  ")
	end := now
	if it.final {
		end = it.ended
	}
	elapsed := end.Sub(it.begun).Round(time.Second)
	switch {
	case it.final && it.failed != "":
		fmt.Fprintf(&b, "failed after %s: %s", elapsed, firstLine(it.failed))
	case it.final && it.built:
		b.WriteString("already built")
	case it.final:
		fmt.Fprintf(&b, "done in %s", elapsed)
	case it.st.State == "":
		fmt.Fprintf(&b, "starting  %s", elapsed)
	default:
		fmt.Fprintf(&b, "%s  %s", it.st.State, elapsed)
	}
	if it.failed == "" {
		if it.st.PathsTotal > 0 {
			fmt.Fprintf(&b, "  paths %d/%d", it.st.PathsDone, it.st.PathsTotal)
		}
		if it.st.LayersTotal > 0 {
			fmt.Fprintf(&b, "  layers %d/%d", it.st.LayersDone, it.st.LayersTotal)
		}
		if it.st.BytesCompressed > 0 {
			b.WriteString("  " + humanBytes(it.st.BytesCompressed))
		}
		// Last: where a terminal's line is cut, the digest goes first.
		if it.st.ManifestDigest != "" {
			b.WriteString("  " + it.st.ManifestDigest)
		}
	}
	if it.note != "" {
		b.WriteString("  — " + it.note)
	}
	return strings.TrimRight(b.String(), " ")
}

func firstLine(s string) string {
	first, rest, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if strings.TrimSpace(rest) != "" {
		first += " …"
	}
	return first
}

// humanBytes is n in decimal units, as a person reads it.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %cB", v, "kMGT"[i])
}
