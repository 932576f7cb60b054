// Command nixport is a container registry that builds images on demand from
// Nix packages: `docker pull HOST/shell/git/htop` gets an image with exactly
// those packages, built on the first pull and served from storage after.
//
// main only wires the pieces together: configuration → storage → image
// sources → builder → registry API → HTTP server, and shuts down cleanly on
// SIGINT or SIGTERM.
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
	"github.com/nixport/nixport/web"
)

func main() {
	cfg, err := config.Load(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
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
	if err := run(ctx, cfg, log); err != nil {
		log.WithError(err).Error("nixport stopped")
		return 1
	}
	return 0
}

// run serves until ctx is cancelled, then drains in-flight requests.
func run(ctx context.Context, cfg *config.Config, log *logrus.Logger) error {
	app, err := wire(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr(), err)
	}
	srv := &http.Server{
		Handler:           app.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.WithFields(logrus.Fields{
		"addr":    ln.Addr().String(),
		"storage": cfg.StorageBackend,
		"source":  string(cfg.Source.Kind),
	}).Info("nixport listening")

	front := web.NewServer(srv)
	serveErr := make(chan error, 1)
	go func() { serveErr <- front.Serve(ln) }()

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
