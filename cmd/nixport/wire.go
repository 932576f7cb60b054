package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/auth"
	"github.com/nixport/nixport/blobgc"
	"github.com/nixport/nixport/builder"
	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/push"
	"github.com/nixport/nixport/source/command"
	"github.com/nixport/nixport/source/router"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
	"github.com/nixport/nixport/storage/gcs"
	s3store "github.com/nixport/nixport/storage/s3"
	"github.com/nixport/nixport/web"
)

// app is the wired registry: its HTTP handler, its metrics and what to
// close after.
type app struct {
	// Instance says which Nix runs and which package source is served,
	// for /readyz and the start-up log line.
	Instance func() web.Instance

	Handler http.Handler
	Metrics *metrics.Metrics
	closers []func() error
}

func (a *app) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

func wire(ctx context.Context, cfg *config.Config, log *logrus.Logger) (*app, error) {
	a := &app{Metrics: metrics.New()}
	backend, err := openStorage(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if c, ok := backend.(io.Closer); ok {
		a.closers = append(a.closers, c.Close)
	}
	store := a.Metrics.Storage(backend)
	src, driver, closeSrc, err := openSource(ctx, cfg, store, a.Metrics, log)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.closers = append(a.closers, closeSrc)
	router, err := router.Load(cfg.Routes, src, router.Options{
		Storage:        store,
		Log:            log,
		CommandTimeout: cfg.NixTimeout,
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("loading NIXPORT_ROUTES: %w", err)
	}
	// NIX_TIMEOUT bounds a build; a command route may have a longer
	// deadline of its own, plus its kill grace and the ingest of its
	// output.
	buildTimeout := cfg.NixTimeout
	if d := router.MaxCommandTimeout(); d > 0 {
		buildTimeout = max(buildTimeout, d+command.DefaultKillGrace+time.Minute)
	}
	b, err := builder.New(builder.Options{
		Storage:         store,
		Source:          router,
		Log:             log,
		MaxBuilds:       cfg.MaxBuilds,
		MovingTagTTL:    cfg.MovingTagTTL,
		BuildTimeout:    buildTimeout,
		PullWait:        cfg.PullWait,
		FailedBuildTTL:  cfg.FailedBuildTTL,
		Metrics:         a.Metrics,
		BuildRate:       cfg.BuildRate,
		ClientMaxBuilds: cfg.ClientMaxBuilds,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.closers = append(a.closers, b.Close)
	if cfg.GCInterval > 0 {
		gcOpts := blobgcOptions(cfg, store, buildTimeout, a.Metrics, log)
		a.closers = append(a.closers, blobgc.StartSchedule(gcOpts, cfg.GCInterval).Close)
		log.WithFields(logrus.Fields{"interval": cfg.GCInterval.String(), "grace": cfg.GCGrace.String()}).Info("storage's garbage is collected on a schedule")
	}
	a.Instance = func() web.Instance {
		return web.Instance{NixVersion: driver.NixVersion(), Source: string(cfg.Source.Kind), SourceRevision: driver.Revision()}
	}
	// The object the readiness check writes and reads back is this
	// process's: removed when it stops, so instances do not leave one each.
	host, _ := os.Hostname()
	healthObject := fmt.Sprintf("health/%s-%d", host, os.Getpid())
	a.closers = append(a.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return store.DeleteObject(ctx, healthObject)
	})
	opts := web.Options{Storage: store, Images: b, Builds: b, Log: log, WebDir: cfg.WebDir,
		Checks:  readinessChecks(store, driver, healthObject),
		Metrics: a.Metrics, ServeMetrics: cfg.MetricsAddr == "",
		AuthMode: cfg.AuthRequired, TrustedProxies: cfg.TrustedProxies,
		Instance: a.Instance}
	if cfg.AuthHtpasswd != "" {
		users, err := auth.OpenHtpasswd(cfg.AuthHtpasswd, log)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("NIXPORT_AUTH_HTPASSWD: %w", err)
		}
		secret, err := auth.LoadTokenSecret(ctx, store)
		if err == nil {
			err = users.SetTokenSecret(secret)
		}
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("registry tokens: %w", err)
		}
		opts.Auth = users
	}
	if len(cfg.PushNamespaces) > 0 {
		reg, err := push.New(push.Options{Storage: store, Namespaces: cfg.PushNamespaces,
			MaxUploadBytes: cfg.MaxUploadBytes, UploadTimeout: cfg.UploadTimeout, Log: log})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("NIXPORT_PUSH_NAMESPACES: %w", err)
		}
		a.closers = append(a.closers, reg.Close)
		opts.Push = reg
		if cfg.AuthHtpasswd == "" {
			log.WithField("namespaces", strings.Join(cfg.PushNamespaces, ",")).
				Warn("pushes and deletes are open to anyone who reaches this server: set NIXPORT_AUTH_HTPASSWD, or listen on loopback only")
		}
	}
	h, err := web.New(opts)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("setting up the registry API: %w", err)
	}
	a.Handler = h
	return a, nil
}

func openStorage(ctx context.Context, cfg *config.Config, log *logrus.Logger) (storage.Backend, error) {
	switch cfg.StorageBackend {
	case "filesystem":
		b, err := filesystem.New(cfg.StoragePath, log)
		if err != nil {
			return nil, fmt.Errorf("opening filesystem storage at %s: %w", cfg.StoragePath, err)
		}
		return b, nil
	case "gcs":
		opts := gcs.Options{Bucket: cfg.GCSBucket, SigningAccount: cfg.GCSSigningAccount, Log: log}
		if cfg.GCSSigningKey != "" {
			key, err := os.ReadFile(cfg.GCSSigningKey)
			if err != nil {
				return nil, fmt.Errorf("reading GCS_SIGNING_KEY: %w", err)
			}
			opts.SigningKey = key
		}
		// The client library talks to an emulator when this is set; signed
		// URLs must then point at it too.
		if host := os.Getenv("STORAGE_EMULATOR_HOST"); host != "" {
			opts.Endpoint = host
			if !strings.Contains(host, "://") {
				opts.Endpoint = "http://" + host
			}
		}
		b, err := gcs.New(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("opening GCS bucket %s: %w", cfg.GCSBucket, err)
		}
		return b, nil
	case "s3":
		b, err := s3store.New(ctx, s3store.Options{
			Bucket:         cfg.S3Bucket,
			Region:         cfg.AWSRegion,
			Endpoint:       cfg.S3Endpoint,
			ForcePathStyle: cfg.S3ForcePathStyle,
			PresignedURLs:  cfg.S3UsePresignedURLs,
			Log:            log,
		})
		if err != nil {
			return nil, fmt.Errorf("opening S3 bucket %s: %w", cfg.S3Bucket, err)
		}
		return b, nil
	default:
		return nil, errors.New("storage backend " + cfg.StorageBackend + " is not available in this build")
	}
}

// sourceCheckEvery is how often readiness evaluates the package source:
// an evaluation of nixpkgs costs seconds, and load balancers probe every
// few seconds.
const sourceCheckEvery = 30 * time.Second

// readinessChecks are what /readyz asks: storage takes a small object and
// gives it back, Nix runs, and the package source evaluates at latest
// (every sourceCheckEvery; it fails with the reason when the package set
// needs a newer Nix). Names routed to command or layout sources need no
// Nix, but every other name goes to the Nix source, so it is always
// checked.
func readinessChecks(store storage.Backend, driver *nix.Driver, name string) []web.Check {
	return []web.Check{
		{Name: "storage", Run: func(ctx context.Context) error {
			want := []byte(time.Now().UTC().Format(time.RFC3339Nano))
			if err := store.PutObject(ctx, name, want); err != nil {
				return fmt.Errorf("writing %s: %w", name, err)
			}
			got, err := store.GetObject(ctx, name)
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			if string(got) != string(want) {
				return fmt.Errorf("%s read back other bytes than written", name)
			}
			return nil
		}},
		{Name: "nix", Run: func(ctx context.Context) error {
			_, err := driver.Version(ctx)
			return err
		}},
		{Name: "source", Every: sourceCheckEvery, Run: driver.CheckSource},
	}
}
