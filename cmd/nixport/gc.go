package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/blobgc"
	"github.com/nixport/nixport/bytesize"
	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/push"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/version"
)

// gcAbout is the head of nixport gc -h.
const gcAbout = `Usage: nixport gc [-dry-run] [-v] [flags]

Deletes the blobs of storage that no manifest (pushed or built) and no build
record names, and that were neither written nor reused within the grace
period (NIXPORT_GC_GRACE): the same collection a server runs every
NIXPORT_GC_INTERVAL. It reads the server's settings (the same environment
and flags) to open the same storage, and runs while servers use it: a
build or push in progress loses nothing. One collection runs at a time
across everything sharing the storage.

  -dry-run
    	delete nothing; say what would be deleted
  -v	list every blob deleted (with -dry-run: that would be), one per line
  -h	show this help

The server's settings (those of storage and NIXPORT_GC_GRACE count here):

`

// gcMain runs nixport gc and returns its exit status: 0 when the
// collection ran to its end, 1 when it failed or another was running, 2
// for a configuration error.
func gcMain(args []string, stdout, stderr io.Writer) int {
	var dryRun, verbose *bool
	cmd := config.Command{Name: "gc", About: gcAbout, Flags: func(fs *flag.FlagSet) {
		dryRun = fs.Bool("dry-run", false, "delete nothing; say what would be deleted")
		verbose = fs.Bool("v", false, "list every blob deleted, one per line")
	}}
	cfg, err := config.LoadCommand(cmd, args, os.Getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, config.ErrVersion):
		fmt.Fprintf(stdout, "nixport %s (%s)\n", version.String(), version.Go())
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "nixport gc:", err)
		return 2
	}
	log := logrus.New()
	log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	log.SetOutput(stderr)
	log.SetLevel(cfg.LogLevel)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	backend, err := openStorage(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "nixport gc:", err)
		return 1
	}
	if c, ok := backend.(io.Closer); ok {
		defer c.Close()
	}
	opts := blobgcOptions(cfg, backend, cfg.NixTimeout, nil, log)
	var mu sync.Mutex
	if *verbose {
		opts.Each = func(st storage.BlobStat) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(stdout, "%s %d\n", st.Digest, st.Size)
		}
	}
	res, err := blobgc.Run(ctx, opts, *dryRun)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		fmt.Fprintln(stderr, "nixport gc:", err)
		return 1
	}
	fmt.Fprintln(stdout, summary(res, cfg.GCGrace))
	return 0
}

// summary says what a collection did, in a line.
func summary(res blobgc.Result, grace time.Duration) string {
	verb := "deleted"
	if res.DryRun {
		verb = "would delete"
	}
	return fmt.Sprintf("%s %d blobs, %s, of %d stored (%s); kept %d in use, %d written or reused within the grace of %s, %d reused while being deleted; took %s",
		verb, res.Deleted, bytesize.Format(res.DeletedBytes), res.Blobs, bytesize.Format(res.Bytes),
		res.Marked, res.Recent, grace, res.Refreshed, res.Duration.Round(time.Millisecond))
}

// blobgcOptions are the collector's options, the same for nixport gc and
// the server's schedule: its storage, its grace, and the root sets beyond
// the records (a package that keeps blobs alive by other means adds its
// own here, by the prefix of its objects: Roots: {"push/": registry}).
//
// longestBuild is what bounds a build (NIX_TIMEOUT, or a command route's
// longer timeout): a grace below it is allowed (a test, storage no server
// builds into) but said.
func blobgcOptions(cfg *config.Config, store storage.Backend, longestBuild time.Duration, m *metrics.Metrics, log logrus.FieldLogger) blobgc.Options {
	if cfg.GCGrace < longestBuild {
		log.WithFields(logrus.Fields{"grace": cfg.GCGrace.String(), "longest_build": longestBuild.String()}).
			Warn("NIXPORT_GC_GRACE is shorter than the longest build (NIX_TIMEOUT, or a command route's timeout): a collection may delete the blobs of a build still running")
	}
	// The push repositories' links are roots whether or not this instance
	// takes pushes: storage may hold them from another instance or an
	// earlier configuration.
	return blobgc.Options{Storage: store, Grace: cfg.GCGrace, Log: log, Metrics: m,
		Roots: map[string]blobgc.Roots{push.Prefix: push.Roots{Store: store}}}
}
