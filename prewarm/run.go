package prewarm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nixport/nixport/buildstatus"
)

// maxRestarts bounds how often one image's build is started again because
// the server no longer knows it (it restarted, or forgot the build among
// older finished ones).
const maxRestarts = 2

// Errors a context ends with: the -timeout passed, or prewarm was
// interrupted. The builds go on on the server either way.
var (
	errTimeout     = errors.New("timed out")
	errInterrupted = errors.New("interrupted")
)

// item is one image and what is known of its build.
type item struct {
	ref    Ref
	begun  time.Time          // when prewarm asked for it
	st     buildstatus.Status // the last status; zero before the server answered
	built  bool               // the server had the image already
	note   string             // a transient failure being retried
	final  bool               // built or failed: nothing more will change
	failed string             // why it failed, if final and not built
	ended  time.Time          // when it became final
}

// update is what a watcher learnt: a status, a retry, or the end.
type update struct {
	i      int
	st     *buildstatus.Status
	built  bool
	note   string
	final  bool
	failed string
}

// runner starts every image's build and waits for all of them.
type runner struct {
	c        *client
	interval time.Duration // between two polls of a build
	now      func() time.Time
	out      display
}

// run returns the items once every one is final: built, failed, or cut
// short by ctx (whose cause, errTimeout or errInterrupted, says why).
func (r *runner) run(ctx context.Context, refs []Ref) []*item {
	items := make([]*item, len(refs))
	updates := make(chan update)
	for i, ref := range refs {
		items[i] = &item{ref: ref, begun: r.now()}
		go r.watch(ctx, i, ref, updates)
	}
	var tick <-chan time.Time
	if d := r.out.tick(); d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	r.out.show(items, r.now())
	for left := len(items); left > 0; {
		select {
		case u := <-updates:
			it := items[u.i]
			if u.st != nil {
				it.st, it.built = *u.st, u.built
			}
			it.note = u.note
			if u.final {
				it.final, it.failed, it.ended = true, u.failed, r.now()
				left--
			}
			r.out.show(items, r.now())
		case <-tick:
			r.out.show(items, r.now())
		}
	}
	return items
}

// watch starts the build of one image and polls it until it ends. It
// sends exactly one final update, last.
func (r *runner) watch(ctx context.Context, i int, ref Ref, updates chan<- update) {
	send := func(u update) { u.i = i; updates <- u }
	note := func(err error, attempt, attempts int, wait time.Duration) {
		send(update{note: fmt.Sprintf("attempt %d of %d failed, retrying in %s: %v", attempt, attempts, wait, err)})
	}
	fail := func(err error, st buildstatus.Status) {
		if cause := context.Cause(ctx); cause != nil {
			err = fmt.Errorf("%w while %s; the build goes on on the server", cause, stateOr(st, "starting"))
		}
		send(update{final: true, failed: err.Error()})
	}

	st, built, err := r.c.start(ctx, ref, note)
	if err != nil {
		fail(err, st)
		return
	}
	restarts := 0
	for {
		// A copy: the receiver reads it after this goroutine moves on.
		sent := st
		u := update{st: &sent, built: built, final: st.State.Finished()}
		if st.State == buildstatus.Failed {
			u.failed = st.Error
			if u.failed == "" {
				u.failed = "the build failed (the server gave no reason)"
			}
		}
		send(u)
		if u.final {
			return
		}
		if !sleep(ctx, r.interval) {
			fail(ctx.Err(), st)
			return
		}
		next, err := r.c.status(ctx, st.ID, note)
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusNotFound && ae.code != "" && restarts < maxRestarts {
			// The server no longer knows the build: start the image
			// again, which joins a build running or finds it built.
			restarts++
			send(update{st: &sent, note: fmt.Sprintf("the server no longer knows build %s (restarted?); starting the image again", st.ID)})
			next, built, err = r.c.start(ctx, ref, note)
		}
		if err != nil {
			fail(err, st)
			return
		}
		st = next
	}
}

// stateOr is the build's state, or what to say before there is one.
func stateOr(st buildstatus.Status, none string) string {
	if st.State == "" {
		return none
	}
	return string(st.State)
}
