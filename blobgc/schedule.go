package blobgc

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"
)

// firstRunDelay bounds the wait for the first collection on storage that
// has never been collected: enabling a schedule means wanting one.
const firstRunDelay = 5 * time.Minute

// Schedule runs a collection every interval, counted from the last
// collection that ran to its end in any instance sharing the storage (it
// records itself there), so that several instances on one bucket
// collect once per interval between them, not each. A collection that
// fails is tried again after a tenth of the interval (at most an hour).
type Schedule struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// StartSchedule starts collecting every interval (> 0) with opts, until
// Close.
func StartSchedule(opts Options, interval time.Duration) *Schedule {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Schedule{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		schedule(ctx, opts, interval)
	}()
	return s
}

// Close stops the schedule, and a collection it is running (whose
// deletions so far stay), and waits for them to end.
func (s *Schedule) Close() error {
	s.cancel()
	<-s.done
	return nil
}

func schedule(ctx context.Context, opts Options, interval time.Duration) {
	log := opts.log().WithField("interval", interval.String())
	retry := min(interval/10, time.Hour)
	var lastAttempt time.Time
	for {
		last, err := LastRun(ctx, opts.Storage)
		if err != nil {
			log.WithError(err).Warn("reading when storage was last collected")
		}
		now := opts.clock()
		next := last.Add(interval)
		if last.IsZero() {
			next = now.Add(min(interval, firstRunDelay))
		}
		if !lastAttempt.IsZero() && next.Before(lastAttempt.Add(retry)) {
			next = lastAttempt.Add(retry)
		}
		log.WithField("next", next.UTC().Format(time.RFC3339)).Debug("next blob collection")
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Sub(now)):
		}
		lastAttempt = opts.clock()
		_, err = Run(ctx, opts, false)
		switch {
		case errors.Is(err, ErrRunning):
			log.WithError(err).Info("another instance is collecting storage's garbage")
		case err != nil && ctx.Err() == nil:
			log.WithError(err).WithFields(logrus.Fields{"retry_in": retry.String()}).Error("scheduled blob collection failed")
		}
	}
}
