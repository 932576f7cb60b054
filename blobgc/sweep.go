package blobgc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/storage"
)

// sweepBatch is how many blobs to delete the sweep gathers before it
// deletes them (Parallelism at a time): the listing is never held whole.
const sweepBatch = 1000

// sweeper deletes what the mark did not keep.
type sweeper struct {
	opts   Options
	marked *markState
	dryRun bool
	log    logrus.FieldLogger

	mu  sync.Mutex // guards res
	res *Result
}

// sweep lists every blob and deletes those neither marked nor written or
// refreshed since the cutoff. A delete that fails is counted and logged,
// and the sweep goes on; the collection then fails.
func sweep(ctx context.Context, opts Options, marked *markState, dryRun bool, res *Result) error {
	s := &sweeper{opts: opts, marked: marked, dryRun: dryRun, log: opts.log(), res: res}
	var batch []storage.BlobStat
	for st, err := range opts.Storage.ListBlobs(ctx) {
		if err != nil {
			return fmt.Errorf("listing blobs: %w", err)
		}
		res.Blobs++
		res.Bytes += st.Size
		switch {
		case marked.has(st.Digest):
		case !st.Modified.Before(res.Cutoff):
			res.Recent++
			res.RecentBytes += st.Size
		default:
			batch = append(batch, st)
		}
		if len(batch) == sweepBatch {
			if err := s.delete(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := s.delete(ctx, batch); err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d blobs could not be deleted (each is logged)", res.Failed)
	}
	return nil
}

// delete deletes a batch of blobs; only the end of ctx stops it.
func (s *sweeper) delete(ctx context.Context, batch []storage.BlobStat) error {
	jobs := make([]func(context.Context) error, len(batch))
	for i, st := range batch {
		jobs[i] = func(ctx context.Context) error { return s.deleteOne(ctx, st) }
	}
	return parallel.Run(ctx, s.opts.Parallelism, jobs)
}

func (s *sweeper) deleteOne(ctx context.Context, st storage.BlobStat) error {
	log := s.log.WithFields(logrus.Fields{"digest": st.Digest, "size": st.Size})
	if s.dryRun {
		s.count(func(r *Result) { r.Deleted++; r.DeletedBytes += st.Size })
		s.each(st)
		return nil
	}
	err := s.opts.Storage.DeleteBlob(ctx, st.Digest, s.res.Cutoff)
	switch {
	case err == nil:
		s.count(func(r *Result) { r.Deleted++; r.DeletedBytes += st.Size })
		s.opts.Metrics.BlobGCDeleted(st.Size)
		s.each(st)
		log.Debug("blob deleted")
		s.removeReferrer(ctx, st, log)
	case errors.Is(err, storage.ErrBlobRecent):
		s.count(func(r *Result) { r.Refreshed++ })
		log.Debug("blob refreshed since the listing: kept")
	case errors.Is(err, storage.ErrNotFound):
		s.count(func(r *Result) { r.Gone++ })
	case ctx.Err() != nil:
		return fmt.Errorf("deleting blobs: %w", context.Cause(ctx))
	default:
		s.count(func(r *Result) { r.Failed++ })
		log.WithError(err).Warn("deleting a blob failed")
	}
	return nil
}

// removeReferrer removes the referrers index's entries naming st, a
// referrer just deleted, so that the index names no manifest that is not
// stored; unless st was stored again meanwhile, when its writer's entries
// are the ones that count.
func (s *sweeper) removeReferrer(ctx context.Context, st storage.BlobStat, log logrus.FieldLogger) {
	k, _ := keyOf(st.Digest)
	pairs := s.marked.referrers[k]
	if len(pairs) == 0 {
		return
	}
	if _, err := s.opts.Storage.StatBlob(ctx, st.Digest); !errors.Is(err, storage.ErrNotFound) {
		return
	}
	for _, p := range pairs {
		if err := referrers.Remove(ctx, s.opts.Storage, p.Subject, p.Referrer); err != nil {
			log.WithError(err).Warn("removing a deleted referrer from the referrers index")
			continue
		}
		s.count(func(r *Result) { r.ReferrersRemoved++ })
	}
}

func (s *sweeper) count(f func(*Result)) {
	s.mu.Lock()
	f(s.res)
	s.mu.Unlock()
}

func (s *sweeper) each(st storage.BlobStat) {
	if s.opts.Each != nil {
		s.opts.Each(st)
	}
}
