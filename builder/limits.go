package builder

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/errcode"
)

// Limit names, for log lines and metrics.
const (
	limitAuth         = "auth"
	limitBuildRate    = "build_rate"
	limitClientBuilds = "client_builds"
)

// clientLimits bounds what one client (caller.Key) may start: builds per
// hour, as a token bucket holding rate tokens and refilled evenly over
// the hour (NIXPORT_BUILD_RATE), and builds queued or running at once
// (NIXPORT_CLIENT_MAX_BUILDS). Only builds are counted: pulls of built
// images and joins of a build already running cost nothing.
type clientLimits struct {
	rate      int // builds per hour; 0: unbounded
	maxActive int // 0: unbounded

	mu      sync.Mutex
	buckets map[string]*bucket
	active  map[string]int
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxIdleBuckets is how many clients' buckets are kept before full ones
// (clients that have not built for an hour) are dropped.
const maxIdleBuckets = 10000

// admit takes a build for c at now, or says which limit refuses it: a
// TOOMANYREQUESTS error with when to try again. limit names the limit.
// Every build counts as active; only a new image takes from the rate.
func (l *clientLimits) admit(c caller.Caller, now time.Time, newImage bool) (limit string, err error) {
	if l.rate <= 0 && l.maxActive <= 0 {
		return "", nil
	}
	key := c.Key()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxActive > 0 && l.active[key] >= l.maxActive {
		e := errcode.New(errcode.TooManyRequests,
			"%s already has %d builds queued or running, this registry's limit per client (NIXPORT_CLIENT_MAX_BUILDS): pull again when one has finished",
			who(c), l.active[key])
		e.RetryAfter = 30 * time.Second
		return limitClientBuilds, e
	}
	if l.rate > 0 && newImage {
		if l.buckets == nil {
			l.buckets = map[string]*bucket{}
		}
		b, ok := l.buckets[key]
		if !ok {
			if len(l.buckets) >= maxIdleBuckets {
				l.dropFull(now)
			}
			b = &bucket{tokens: float64(l.rate), at: now}
			l.buckets[key] = b
		}
		perSecond := float64(l.rate) / 3600
		b.tokens = math.Min(float64(l.rate), b.tokens+now.Sub(b.at).Seconds()*perSecond)
		b.at = now
		if b.tokens < 1 {
			wait := time.Duration((1 - b.tokens) / perSecond * float64(time.Second))
			e := errcode.New(errcode.TooManyRequests,
				"%s has started %d builds in the last hour, this registry's limit per client (NIXPORT_BUILD_RATE): the next may start in %s; images already built can be pulled meanwhile",
				who(c), l.rate, wait.Round(time.Second))
			e.RetryAfter = wait
			return limitBuildRate, e
		}
		b.tokens--
	}
	if l.active == nil {
		l.active = map[string]int{}
	}
	l.active[key]++
	return "", nil
}

// done ends a build admitted for c.
func (l *clientLimits) done(c caller.Caller) {
	if l.rate <= 0 && l.maxActive <= 0 {
		return
	}
	key := c.Key()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[key] <= 1 {
		delete(l.active, key)
	} else {
		l.active[key]--
	}
}

// dropFull forgets the buckets that have refilled: a client seen again
// starts with a full one, which is what it would have anyway.
func (l *clientLimits) dropFull(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.at) >= time.Hour {
			delete(l.buckets, k)
		}
	}
}

// who names a caller in a message to that caller.
func who(c caller.Caller) string {
	if c.User != "" {
		return fmt.Sprintf("user %q", c.User)
	}
	return "your address " + c.Addr
}

// fairSlots bounds concurrent builds (NIXPORT_MAX_BUILDS) and hands a
// freed slot to the waiting clients in turn, not in arrival order: a
// client that queued many builds gets one slot of every round, so it
// cannot make everyone else wait behind all of them.
type fairSlots struct {
	mu      sync.Mutex
	free    int
	waiting map[string][]*slotWaiter // by client key, oldest first
	turns   []string                 // clients with waiters, next first
}

type slotWaiter struct {
	ready   chan struct{}
	granted bool // set under mu when ready is closed
}

func newFairSlots(n int) *fairSlots {
	return &fairSlots{free: n, waiting: map[string][]*slotWaiter{}}
}

// acquire waits for a slot for client until ctx ends.
func (s *fairSlots) acquire(ctx context.Context, client string) error {
	s.mu.Lock()
	if s.free > 0 && len(s.turns) == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	w := &slotWaiter{ready: make(chan struct{})}
	if len(s.waiting[client]) == 0 {
		s.turns = append(s.turns, client)
	}
	s.waiting[client] = append(s.waiting[client], w)
	s.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		// Granted as ctx ended: pass the slot on.
		s.releaseLocked()
		return ctx.Err()
	}
	q := s.waiting[client]
	for i, x := range q {
		if x == w {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(s.waiting, client)
		for i, c := range s.turns {
			if c == client {
				s.turns = append(s.turns[:i], s.turns[i+1:]...)
				break
			}
		}
	} else {
		s.waiting[client] = q
	}
	return ctx.Err()
}

// release frees a slot: to the oldest waiter of the client whose turn it
// is, which then goes to the back of the turns.
func (s *fairSlots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked()
}

func (s *fairSlots) releaseLocked() {
	if len(s.turns) == 0 {
		s.free++
		return
	}
	client := s.turns[0]
	q := s.waiting[client]
	w := q[0]
	s.turns = s.turns[1:]
	if len(q) == 1 {
		delete(s.waiting, client)
	} else {
		s.waiting[client] = q[1:]
		s.turns = append(s.turns, client)
	}
	w.granted = true
	close(w.ready)
}
