// Command nixport is a container registry that builds images on demand from
// Nix packages: `docker pull HOST/shell/git/htop` gets an image with exactly
// those packages, built on the first pull and served from storage after.
//
// main only wires the pieces together: configuration → storage → image
// sources → builder → registry API → HTTP server, and shuts down cleanly on
// SIGINT or SIGTERM. A command first on the command line runs that command
// instead of the server: "nixport prewarm FILE" (package prewarm) builds
// the images FILE lists on a running server; "nixport gc" (package
// blobgc) collects storage's garbage blobs.
package main

import (
	"context"
	_ "crypto/sha256" // go-digest needs sha256 registered
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/logsink"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/prewarm"
	"github.com/nixport/nixport/version"
	"github.com/nixport/nixport/web"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "prewarm" {
		os.Exit(prewarm.Main(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "gc" {
		os.Exit(gcMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	cfg, err := config.Load(os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, config.ErrVersion):
		fmt.Printf("nixport %s (%s)\n", version.String(), version.Go())
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "nixport:", err)
		os.Exit(2)
	}
	os.Exit(serve(cfg))
}

// serve runs the registry and returns the exit code. It owns the log's
// batching writer, so every line is written before the process exits.
func serve(cfg *config.Config) int {
	sink := logsink.New(os.Stderr, 0)
	defer sink.Close()
	log := logrus.New()
	log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	log.SetOutput(sink)
	log.SetLevel(cfg.LogLevel)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, cfg, log)
	var startErr startupError
	switch {
	case errors.As(err, &startErr):
		// Before serving, the log may be going nowhere an operator looks
		// yet: the reason goes to stderr as one plain line as well.
		log.WithError(err).Error("nixport could not start")
		sink.Sync()
		fmt.Fprintln(os.Stderr, "nixport:", startErr.err)
		return 1
	case err != nil:
		log.WithError(err).Error("nixport stopped")
		return 1
	}
	return 0
}

// serveMetrics serves /metrics alone on addr (NIXPORT_METRICS_ADDR),
// through the same server code as the registry, until the returned stop.
func serveMetrics(addr string, m *metrics.Metrics, timeouts web.Timeouts, log *logrus.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv, err := web.NewServer(web.ServerOptions{Handler: mux, Timeouts: timeouts, Log: log})
	if err != nil {
		return nil, fmt.Errorf("metrics server: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (NIXPORT_METRICS_ADDR): %w", addr, err)
	}
	log.WithField("addr", ln.Addr().String()).Info("metrics listening")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("serving metrics")
		}
	}()
	return func() {
		srv.Close()
		<-done
	}, nil
}

// startupError is a failure before the registry serves: a port in use,
// storage that cannot be opened, a certificate that does not load.
type startupError struct{ err error }

func (e startupError) Error() string { return e.err.Error() }
func (e startupError) Unwrap() error { return e.err }

// run serves until ctx is cancelled, then drains in-flight requests.
func run(ctx context.Context, cfg *config.Config, log *logrus.Logger) error {
	timeouts := web.Timeouts{BodyIdle: cfg.BodyTimeout, Write: cfg.WriteTimeout}
	app, err := wire(ctx, cfg, log)
	if err != nil {
		return startupError{err}
	}
	defer app.Close()

	front, err := web.NewServer(web.ServerOptions{
		Handler:           app.Handler,
		Timeouts:          timeouts,
		MaxConnsPerClient: cfg.MaxConnsPerClient,
		TLSCert:           cfg.TLSCert,
		TLSKey:            cfg.TLSKey,
		Log:               log,
	})
	if err != nil {
		return startupError{err}
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return startupError{fmt.Errorf("listening on %s: %w", cfg.Addr(), err)}
	}
	scheme := "http"
	if front.TLS() {
		scheme = "https"
	}
	instance := app.Instance()
	log.WithFields(logrus.Fields{
		"addr":        ln.Addr().String(),
		"scheme":      scheme,
		"storage":     cfg.StorageBackend,
		"source":      string(cfg.Source.Kind),
		"version":     version.String(),
		"go":          version.Go(),
		"nix_version": instance.NixVersion,
		// Known at start for builtin and a git checkout; a git or
		// channel source's is logged by its first evaluation ("package
		// source at latest").
		"source_revision": instance.SourceRevision,
	}).Info("nixport listening")

	serveErr := make(chan error, 1)
	go func() { serveErr <- front.Serve(ln) }()

	if cfg.MetricsAddr != "" {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, app.Metrics, timeouts, log)
		if err != nil {
			front.Close()
			<-serveErr
			return startupError{err}
		}
		defer stopMetrics()
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.WithField("timeout", cfg.ShutdownTimeout.String()).Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := front.Shutdown(sctx); err != nil {
		log.WithError(err).Warn("in-flight requests did not finish in time; closing")
		front.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	log.Info("nixport stopped")
	return nil
}
