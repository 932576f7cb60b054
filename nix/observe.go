package nix

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"sync"
)

// Observer hears what a build's Nix processes do while they run: their
// log (stderr) as it is written, and, while realising, how many of the
// store paths to build or fetch are done. The build status API shows both;
// source.Progress is an Observer.
type Observer interface {
	Output(p []byte)
	Paths(done, total int)
}

type observerKey struct{}

// WithObserver returns ctx carrying o: the Nix processes run under ctx
// report to it.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, &observation{o: o})
}

func observationOf(ctx context.Context) *observation {
	ob, _ := ctx.Value(observerKey{}).(*observation)
	return ob
}

// observation counts a build's realisation from Nix's log: the paths it
// announces it will build or fetch, and those it has started. A path
// started is counted done when the next one starts, or when the
// realisation ends.
type observation struct {
	o       Observer
	mu      sync.Mutex
	total   int
	started int
}

var (
	willBuild = regexp.MustCompile(`^(?:these (\d+) derivations|this derivation) will be built`)
	willFetch = regexp.MustCompile(`^(?:these (\d+) paths|this path) will be fetched`)
	startsOne = regexp.MustCompile(`^(?:building '/nix/store/|copying path '/nix/store/)`)
)

// line reads one line of a Nix process's log.
func (ob *observation) line(l []byte) {
	var announced int
	switch {
	case willBuild.Match(l):
		announced = count(willBuild.FindSubmatch(l)[1])
	case willFetch.Match(l):
		announced = count(willFetch.FindSubmatch(l)[1])
	case startsOne.Match(l):
		ob.mu.Lock()
		ob.started++
		done, total := max(ob.started-1, 0), max(ob.total, ob.started)
		ob.mu.Unlock()
		ob.o.Paths(done, total)
		return
	default:
		return
	}
	ob.mu.Lock()
	ob.total += announced
	done, total := max(ob.started-1, 0), ob.total
	ob.mu.Unlock()
	ob.o.Paths(done, total)
}

// realised says a realisation ended well: everything announced is done.
func (ob *observation) realised() {
	ob.mu.Lock()
	total := max(ob.total, ob.started)
	ob.mu.Unlock()
	ob.o.Paths(total, total)
}

// count is "these N ..."'s N, or 1 for "this ...".
func count(n []byte) int {
	if len(n) == 0 {
		return 1
	}
	v, _ := strconv.Atoi(string(n))
	return v
}

// logWriter passes one Nix process's stderr to an observation, and its
// complete lines to the counting.
type logWriter struct {
	ob      *observation
	partial []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.ob.o.Output(p)
	data := append(w.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		w.ob.line(bytes.TrimSpace(data[:i]))
		data = data[i+1:]
	}
	// An endless line is not kept whole: it says nothing countable.
	if len(data) > 4096 {
		data = data[:0]
	}
	w.partial = append(w.partial[:0], data...)
	return len(p), nil
}
