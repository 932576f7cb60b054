package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
)

// Across instances sharing one storage (several replicas on one bucket),
// one build per image is arbitrated by a lease in storage: the instance
// that takes it builds; the others wait for its result (the records it
// writes) or for the lease to be released or to expire, then try again. A
// crashed instance's lease expires after leaseTTL (a live one renews it),
// or is taken over at once when the crashed instance ran on this machine
// (holderGone).
const (
	leasePrefix = "builds/"
	// leaseTTL bounds how long a crashed instance blocks an image.
	leaseTTL = 30 * time.Second
	// leasePoll is how often a waiting instance looks for the result.
	leasePoll = 250 * time.Millisecond
	// clockSkew is how far apart instances' clocks may be when judging
	// whether a record was written after we started waiting.
	clockSkew = 5 * time.Second
)

// newHolderID names this instance in leases: "host/process/random". The
// process is its procalive.ID (pid, start time, pid space), so that an
// instance on the same machine can tell the holder has died (holderGone);
// where that cannot be known, the pid alone. The random part keeps two
// instances in one process (tests) apart.
func newHolderID() string {
	host, _ := os.Hostname()
	proc := strconv.Itoa(os.Getpid())
	if me, err := procalive.Self(); err == nil {
		proc = me.String()
	}
	var r [6]byte
	rand.Read(r[:])
	return fmt.Sprintf("%s/%s/%s", host, proc, hex.EncodeToString(r[:]))
}

// holderGone says whether a lease's holder, named by newHolderID, is a
// process known to have died: a crashed server on this machine. Its lease
// is then taken over at once, not at its expiry. Holders of other
// machines, and those named without a procalive.ID (older servers), are
// never known to be gone.
func holderGone(holder string) bool {
	parts := strings.Split(holder, "/")
	if len(parts) != 3 {
		return false
	}
	id, err := procalive.Parse(parts[1])
	return err == nil && procalive.Dead(id)
}

// leased runs build holding the image's lease, or returns the result
// another instance built while we waited. Without a Leaser it just builds.
func (b *Builder) leased(ctx context.Context, key, name, tag string, pinned bool, build func(context.Context) (source.Manifests, error)) (source.Manifests, error) {
	leaser, ok := b.opts.Storage.(storage.Leaser)
	if !ok {
		return build(ctx)
	}
	log := requestid.Logger(ctx, b.log).WithFields(logrus.Fields{"image": name, "tag": tag})
	leaseName := leasePrefix + source.Hash(key)
	waitStart := b.now()
	waiting := false
	for {
		lease, err := leaser.TryLease(ctx, leaseName, b.holder, leaseTTL, storage.TakeOverGone(holderGone))
		var held *storage.LeaseHeldError
		switch {
		case err == nil:
			// The holder may have finished between our last look and now.
			if waiting {
				if m, ok := b.builtElsewhere(ctx, key, name, tag, pinned, waitStart); ok {
					lease.Release(context.WithoutCancel(ctx))
					return m, nil
				}
			}
			return b.holding(ctx, log, lease, build)
		case errors.As(err, &held):
			if !waiting {
				log.WithField("holder", held.Holder).Info("another instance is building this image: waiting for it")
				waiting = true
			}
		default:
			return nil, fmt.Errorf("taking the build lease of %s:%s: %w", name, tag, err)
		}
		select {
		case <-ctx.Done():
			return nil, errcode.Wrap(errcode.Unavailable, ctx.Err(), "gave up waiting for another instance's build of %s:%s", name, tag)
		case <-time.After(leasePoll):
		}
		if m, ok := b.builtElsewhere(ctx, key, name, tag, pinned, waitStart); ok {
			log.Info("image built by another instance")
			return m, nil
		}
	}
}

// holding runs build while renewing the lease, then releases it.
func (b *Builder) holding(ctx context.Context, log logrus.FieldLogger, lease storage.Lease, build func(context.Context) (source.Manifests, error)) (source.Manifests, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := lease.Renew(ctx); err != nil {
					if errors.Is(err, storage.ErrLeaseLost) {
						// Another instance took over: it builds now, and
						// two builders must not race on one image.
						log.WithError(err).Error("build lease lost; stopping this build")
						cancel(err)
						return
					}
					log.WithError(err).Warn("renewing build lease")
				}
			}
		}
	}()
	m, err := build(ctx)
	cancel(nil)
	<-renewed
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if rerr := lease.Release(rctx); rerr != nil {
		log.WithError(rerr).Warn("releasing build lease (it will expire)")
	}
	return m, err
}

// builtElsewhere looks for the records another instance writes after a
// build: the pinned record, or a tag record written since we began to wait.
func (b *Builder) builtElsewhere(ctx context.Context, key, name, tag string, pinned bool, since time.Time) (source.Manifests, bool) {
	if pinned {
		if m, err := b.pinnedRecord(ctx, key); err == nil {
			return m, true
		}
		return nil, false
	}
	r, err := source.GetRecord(ctx, b.opts.Storage, tagObject(name, tag))
	if err != nil || r.BuiltAt.Before(since.Add(-clockSkew)) {
		return nil, false
	}
	m, err := r.Manifests()
	if err != nil {
		return nil, false
	}
	return m, true
}
