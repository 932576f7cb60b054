package prewarm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/buildstatus"
)

func TestLine(t *testing.T) {
	begun := clock
	tests := []struct {
		it   item
		now  time.Time
		want string
	}{
		{item{}, begun.Add(1500 * time.Millisecond), "shell/hello:latest  starting  2s"},
		{item{st: buildstatus.Status{ID: "b1", State: buildstatus.Queued}}, begun.Add(time.Second), "shell/hello:latest  queued  1s"},
		{item{st: buildstatus.Status{ID: "b1", State: buildstatus.Realising, PathsDone: 2, PathsTotal: 9}}, begun.Add(75 * time.Second), "shell/hello:latest  realising  1m15s  paths 2/9"},
		{item{st: buildstatus.Status{ID: "b1", State: buildstatus.Archiving, PathsDone: 9, PathsTotal: 9, LayersDone: 3, LayersTotal: 5, BytesCompressed: 12_345_678}}, begun, "shell/hello:latest  archiving  0s  paths 9/9  layers 3/5  12.3 MB"},
		{item{st: buildstatus.Status{ID: "b1", State: buildstatus.Done, ManifestDigest: "sha256:ab", LayersDone: 5, LayersTotal: 5}, final: true, ended: begun.Add(4 * time.Second)}, begun.Add(time.Hour), "shell/hello:latest  done in 4s  layers 5/5  sha256:ab"},
		{item{st: buildstatus.Status{ID: "b1", State: buildstatus.Done, ManifestDigest: "sha256:ab"}, built: true, final: true, ended: begun}, begun, "shell/hello:latest  already built  sha256:ab"},
		{item{st: buildstatus.Status{ID: "b1", State: buildstatus.Failed, PathsTotal: 3}, final: true, failed: "it broke:\n  here", ended: begun.Add(3 * time.Second)}, begun.Add(time.Hour), "shell/hello:latest  failed after 3s: it broke: …"},
		{item{final: true, failed: "NAME_UNKNOWN: no such package\n", ended: begun}, begun, "shell/hello:latest  failed after 0s: NAME_UNKNOWN: no such package"},
		{item{st: buildstatus.Status{ID: "b1", State: buildstatus.Queued}, note: "attempt 1 of 5 failed, retrying in 1s: oops"}, begun, "shell/hello:latest  queued  0s  — attempt 1 of 5 failed, retrying in 1s: oops"},
	}
	for _, tt := range tests {
		it := tt.it
		it.ref, it.begun = Ref{Name: "shell/hello", Tag: "latest"}, begun
		if got := line(&it, tt.now, false); got != tt.want {
			t.Errorf("line:\n got %q\nwant %q", got, tt.want)
		}
	}
	it := &item{ref: Ref{Name: "shell/hello", Tag: "latest"}, begun: begun, st: buildstatus.Status{ID: "b1", State: buildstatus.Queued}}
	if got, want := line(it, begun, true), "shell/hello:latest (build b1)  queued  0s"; got != want {
		t.Errorf("line with the id: %q, want %q", got, want)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1234: "1.2 kB", 2_345_678: "2.3 MB", 5e9: "5.0 GB", 7e12: "7.0 TB", 8e15: "8000.0 TB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestPlainHeartbeat: in a log, an image's line is written when its state
// changes, and again after a heartbeat without a change, never twice for
// the same final state.
func TestPlainHeartbeat(t *testing.T) {
	var out bytes.Buffer
	p := &plain{w: &out, heartbeat: time.Minute}
	it := &item{ref: Ref{Name: "shell/hello", Tag: "latest"}, begun: clock}
	items := []*item{it}
	step := func(now time.Time, want string) {
		t.Helper()
		out.Reset()
		p.show(items, now)
		if out.String() != want {
			t.Errorf("at %s: wrote %q, want %q", now.Sub(clock), out.String(), want)
		}
	}
	step(clock, "") // nothing heard yet
	it.st = buildstatus.Status{ID: "b1", State: buildstatus.Realising, PathsTotal: 4}
	step(clock.Add(time.Second), "shell/hello:latest (build b1)  realising  1s  paths 0/4\n")
	it.st.PathsDone = 2
	step(clock.Add(59*time.Second), "")
	step(clock.Add(61*time.Second), "shell/hello:latest  realising  1m1s  paths 2/4\n")
	step(clock.Add(62*time.Second), "")
	it.st = buildstatus.Status{ID: "b1", State: buildstatus.Done, ManifestDigest: "sha256:ab"}
	it.final, it.ended = true, clock.Add(70*time.Second)
	step(clock.Add(70*time.Second), "shell/hello:latest  done in 1m10s  sha256:ab\n")
	step(clock.Add(200*time.Second), "")
}

// TestLiveFitsTheTerminal: with more images building than the terminal
// has rows, the last row counts those not shown, and every redraw goes
// back over exactly the rows it drew.
func TestLiveFitsTheTerminal(t *testing.T) {
	var out bytes.Buffer
	l := &live{w: &out, size: func() (int, int) { return 40, 4 }}
	var items []*item
	for i := range 5 {
		items = append(items, &item{ref: Ref{Name: fmt.Sprintf("shell/p%d", i), Tag: "latest"}, begun: clock})
	}
	l.show(items, clock)
	first := out.String()
	if want := "\r\x1b[J" + "shell/p0:latest  starting  0s\nshell/p1:latest  starting  0s\n… and 3 more\n"; first != want {
		t.Errorf("first frame %q, want %q", first, want)
	}
	out.Reset()
	items[1].final, items[1].failed, items[1].ended = true, strings.Repeat("x", 100), clock
	l.show(items, clock)
	if want := "\x1b[3A\r\x1b[J" + "shell/p1:latest  failed after 0s: xxxx…\nshell/p0:latest  starting  0s\nshell/p2:latest  starting  0s\n… and 2 more\n"; out.String() != want {
		t.Errorf("second frame %q, want %q", out.String(), want)
	}
	out.Reset()
	for _, it := range items {
		it.final, it.ended = true, clock
	}
	l.show(items, clock)
	if !strings.HasPrefix(out.String(), "\x1b[3A\r\x1b[J") || strings.Contains(out.String(), "p1") || strings.Count(out.String(), "\n") != 4 {
		t.Errorf("last frame %q: want the four images not printed yet, once each", out.String())
	}
	out.Reset()
	l.show(items, clock)
	if out.String() != "\r\x1b[J" {
		t.Errorf("a frame with nothing left to draw: %q", out.String())
	}
}
