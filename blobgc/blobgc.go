// Package blobgc collects the garbage of storage: the blobs that no
// manifest (pushed or built) and no build record names any more, by mark
// and sweep. Storage only grows otherwise: every layer of a failed build,
// every blob of a deleted tag stays forever.
//
// The mark starts from the roots: every source.Record in storage (a tag's
// last build, pinned requests, built plans, the Nix source's manifests by
// input: the prefixes of KnownPrefixes whose role is RoleRecords), and the
// Roots sets a caller adds (the push repositories). Every manifest reached
// is read (manifest.References) and what it references is marked, child
// manifests read in turn; then the referrers of every live manifest
// (package referrers) are live too, and read, until nothing new is
// reached. A root that cannot be read stops the collection before
// anything is deleted: what it keeps alive is unknown. So does an object
// under a prefix the collector does not know (KnownPrefixes, and the
// prefixes of the Roots sets given): a newer nixport, or a package whose
// roots were not handed to the collector, may keep blobs alive there. The
// sweep lists
// every blob (storage.ListBlobs) and deletes those neither marked nor
// written or refreshed since the cutoff: the collection's start less the
// grace period (storage.DeleteBlob, which checks that time again as it
// deletes).
//
// Why nothing in use is deleted. A build or a push writes its blobs (or
// refreshes those it reuses: storage.RefreshBlob, and Commit of a blob
// already stored) before the record or link that names them, and that
// record comes within NIX_TIMEOUT (or the upload timeout) of the writes.
// A blob is deleted only if (1) no root the mark read names it, and (2)
// it was last written or refreshed before the cutoff, as judged by
// DeleteBlob at the moment of the delete. A record the mark did not read
// was written after the mark listed its prefix, so after the collection
// began; the blobs it names were written or refreshed at most the longest
// build before it, so after the cutoff as long as the grace exceeds the
// longest build (plus the GCS backend's refresh slack): (2) fails for
// them. A blob written or refreshed after the collection began fails (2)
// whatever the grace, which is what lets a test with no grace show that
// writes during a collection lose nothing. What the grace cannot cover is
// a build that runs longer than it: keep NIXPORT_GC_GRACE above
// NIX_TIMEOUT. The one step of DeleteBlob that is not atomic is S3's (see
// storage/s3): there a refresh in the few milliseconds between its look
// and its delete is not seen.
//
// Records of the Nix source's layer cache (layers/) are not roots: a
// layer's record whose blob is gone is a cache miss, since the source
// refreshes the blob before reusing it and builds the layer again when it
// is missing. Every other record is: so a built image stays while any of
// its tag, pinned, plan or manifest records names it, and a deleted tag's
// blobs go when the last record naming them goes.
//
// One collection runs at a time across the instances sharing storage
// (Run takes the lease "gc"); a dry run deletes nothing and says what a
// collection would delete. Schedule runs collections every interval.
package blobgc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/storage"
)

// Defaults of Options.
const (
	// DefaultParallelism bounds the reads and deletes in flight: enough
	// to hide a networked backend's latency, little for a filesystem.
	DefaultParallelism = 16
)

// The collector's objects and lease.
const (
	// leaseName is the lease one collection at a time holds.
	leaseName = "gc"
	// leaseTTL bounds how long a crashed collector blocks the next; a
	// live one renews its lease every third of it.
	leaseTTL = time.Minute
	// lastRunObject records the last collection that ran to its end.
	lastRunObject = gcPrefix + "last-run"
)

// ErrRunning says another collection holds the lease (it wraps
// storage.ErrLeaseHeld).
var ErrRunning = errors.New("another garbage collection is running")

// Roots is a set of roots beyond the records the collector knows: what a
// package keeping blobs alive by other means (the push repositories'
// links) adds. The method's signature needs nothing of this package, so
// that such a package need not import it.
type Roots interface {
	// MarkRoots calls blob for every blob the set keeps alive, and
	// manifest for every manifest or index (the collector reads it and
	// keeps what it references, child manifests included). Both may be
	// called from several goroutines. Digests the storage cannot hold
	// (not sha256) are ignored: a set keeping blobs under other digests
	// passes their sha256 ones. An error stops the collection before
	// anything is deleted.
	MarkRoots(ctx context.Context, blob, manifest func(digest.Digest)) error
}

// Options configure a collection.
type Options struct {
	Storage storage.Backend
	// Grace: blobs written or refreshed less than this long before the
	// collection begins are kept, referenced or not. It must exceed the
	// longest build or push (NIX_TIMEOUT), see the package comment.
	Grace time.Duration
	// Roots are the root sets beyond the records, by the top-level prefix
	// of the objects each keeps its state in ("push/"): the collector
	// refuses to run on storage holding objects under a prefix it knows
	// neither from KnownPrefixes nor from here.
	Roots map[string]Roots
	// Parallelism bounds reads and deletes in flight (DefaultParallelism
	// if zero).
	Parallelism int
	// Holder names this instance in the collector's lease; empty: the
	// host, the process and a random part.
	Holder string
	// Each, if set, hears every blob the collection deletes (or, in a dry
	// run, would delete), from several goroutines.
	Each func(storage.BlobStat)
	Log  logrus.FieldLogger
	// Metrics counts runs and deletions (nil: not counted).
	Metrics *metrics.Metrics
	// now is the clock (tests); nil: time.Now.
	now func() time.Time
	// started, if set, runs once the collection has taken its start
	// time, before the mark (tests).
	started func()
}

func (o *Options) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

func (o *Options) log() logrus.FieldLogger {
	if o.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		return l
	}
	return o.Log
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Result says what a collection found and did.
type Result struct {
	DryRun  bool      `json:"dryRun,omitempty"`
	Started time.Time `json:"started"`
	// Cutoff: blobs written or refreshed since are kept.
	Cutoff   time.Time     `json:"cutoff"`
	Duration time.Duration `json:"duration"`

	Records   int `json:"records"`   // records read
	Manifests int `json:"manifests"` // manifests and indexes read
	Missing   int `json:"missing"`   // manifests named but not stored
	Marked    int `json:"marked"`    // distinct blobs kept by the roots

	Blobs int64 `json:"blobs"` // blobs listed
	Bytes int64 `json:"bytes"`
	// Recent: blobs named by no root but written or refreshed since the
	// cutoff, kept.
	Recent      int64 `json:"recent"`
	RecentBytes int64 `json:"recentBytes"`
	// Deleted: blobs deleted (a dry run: that would be).
	Deleted      int64 `json:"deleted"`
	DeletedBytes int64 `json:"deletedBytes"`
	// Refreshed: blobs a writer refreshed (or stored again) between the
	// listing and the delete, kept; Gone: deleted meanwhile by others.
	Refreshed int64 `json:"refreshed"`
	Gone      int64 `json:"gone"`
	// Failed: deletes that failed (the collection reports an error).
	Failed int64 `json:"failed"`
	// ReferrersRemoved: entries of the referrers index whose referrer was
	// deleted.
	ReferrersRemoved int64 `json:"referrersRemoved"`
}

// collect runs one collection (a dry run: deletes nothing), without the
// lease, and logs its start and its mark; Run logs its end.
func collect(ctx context.Context, opts Options, dryRun bool) (Result, error) {
	if opts.Storage == nil {
		return Result{}, errors.New("blob collection: no storage")
	}
	if opts.Grace < 0 {
		return Result{}, fmt.Errorf("blob collection: negative grace %s", opts.Grace)
	}
	if opts.Parallelism < 1 {
		opts.Parallelism = DefaultParallelism
	}
	res := Result{DryRun: dryRun, Started: opts.clock()}
	res.Cutoff = res.Started.Add(-opts.Grace)
	log := opts.log().WithFields(logrus.Fields{"dry_run": dryRun, "grace": opts.Grace.String(), "cutoff": res.Cutoff.UTC().Format(time.RFC3339)})
	log.Info("blob collection started")
	if opts.started != nil {
		opts.started()
	}
	m, err := mark(ctx, opts, &res)
	if err != nil {
		res.Duration = opts.clock().Sub(res.Started)
		return res, fmt.Errorf("the roots could not be read, nothing was deleted: %w", err)
	}
	log.WithFields(logrus.Fields{
		"records": res.Records, "manifests": res.Manifests, "missing_manifests": res.Missing, "marked": res.Marked,
		"duration_ms": opts.clock().Sub(res.Started).Milliseconds(),
	}).Info("blob collection marked what is in use")
	err = sweep(ctx, opts, m, dryRun, &res)
	res.Duration = opts.clock().Sub(res.Started)
	return res, err
}

// Run runs one collection holding the collector's lease (when the backend
// has leases), records it as the last run, counts it in Options.Metrics
// and logs its end ("blob collection finished"); a dry run takes no lease
// and is neither recorded nor counted. Another collection holding the
// lease gives an error wrapping ErrRunning and storage.ErrLeaseHeld.
// Losing the lease (another instance took it over, after this one failed
// to renew it in time) stops the collection.
func Run(ctx context.Context, opts Options, dryRun bool) (Result, error) {
	var res Result
	var err error
	if dryRun {
		res, err = collect(ctx, opts, true)
	} else {
		res, err = runLeased(ctx, opts)
		if errors.Is(err, ErrRunning) {
			return res, err
		}
		opts.Metrics.BlobGCRun(err)
	}
	log := opts.log().WithFields(logrus.Fields{
		"dry_run": dryRun, "blobs": res.Blobs, "bytes": res.Bytes, "marked": res.Marked,
		"kept_recent": res.Recent, "kept_refreshed": res.Refreshed,
		"deleted": res.Deleted, "deleted_bytes": res.DeletedBytes, "failed": res.Failed,
		"referrers_removed": res.ReferrersRemoved, "duration_ms": res.Duration.Milliseconds(),
	})
	switch {
	case err != nil:
		log.WithError(err).Error("blob collection failed")
	case dryRun:
		log.Info("blob collection (dry run) finished: deleted nothing")
	default:
		log.Info("blob collection finished")
	}
	return res, err
}

func runLeased(ctx context.Context, opts Options) (Result, error) {
	leaser, ok := opts.Storage.(storage.Leaser)
	if !ok {
		res, err := collect(ctx, opts, false)
		if err == nil {
			err = recordRun(ctx, opts, res)
		}
		return res, err
	}
	holder := opts.Holder
	if holder == "" {
		holder = defaultHolder()
	}
	lease, err := leaser.TryLease(ctx, leaseName, holder, leaseTTL)
	if errors.Is(err, storage.ErrLeaseHeld) {
		return Result{}, fmt.Errorf("%w: %w", ErrRunning, err)
	}
	if err != nil {
		return Result{}, fmt.Errorf("taking the garbage collection lease: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		renewLease(ctx, lease, cancel, opts.log())
	}()
	res, err := collect(ctx, opts, false)
	if err == nil {
		err = recordRun(ctx, opts, res)
	}
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	cancel(nil)
	<-renewed
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if rerr := lease.Release(rctx); rerr != nil {
		opts.log().WithError(rerr).Warn("releasing the garbage collection lease (it will expire)")
	}
	return res, err
}

// renewLease renews the lease every third of its ttl until ctx ends; a
// lease lost stops the collection.
func renewLease(ctx context.Context, lease storage.Lease, stop context.CancelCauseFunc, log logrus.FieldLogger) {
	t := time.NewTicker(leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := lease.Renew(ctx)
			switch {
			case errors.Is(err, storage.ErrLeaseLost):
				log.WithError(err).Error("garbage collection lease lost: stopping this collection")
				stop(fmt.Errorf("garbage collection lease lost: %w", err))
				return
			case err != nil:
				log.WithError(err).Warn("renewing the garbage collection lease")
			}
		}
	}
}

// lastRun is what lastRunObject holds.
type lastRun struct {
	Holder string `json:"holder"`
	Result
}

// recordRun records res as the last collection, which Schedule reads.
func recordRun(ctx context.Context, opts Options, res Result) error {
	data, err := json.Marshal(lastRun{Holder: opts.Holder, Result: res})
	if err != nil {
		return err
	}
	if err := opts.Storage.PutObject(ctx, lastRunObject, data); err != nil {
		return fmt.Errorf("recording the collection: %w", err)
	}
	return nil
}

// LastRun returns when the last collection that ran to its end (in any
// instance sharing the storage) began, or the zero time if none did.
func LastRun(ctx context.Context, store storage.Backend) (time.Time, error) {
	data, err := store.GetObject(ctx, lastRunObject)
	if errors.Is(err, storage.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	var r lastRun
	if err := json.Unmarshal(data, &r); err != nil {
		// Unreadable: as if there was none (the next collection
		// writes it again).
		return time.Time{}, nil
	}
	return r.Started, nil
}

// defaultHolder names this process in the lease.
func defaultHolder() string {
	host, _ := os.Hostname()
	var r [6]byte
	rand.Read(r[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}
