package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/nixgc"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/source/nixsource"
	"github.com/nixport/nixport/storage"
)

// openSource sets up the Nix image source from the configuration, and the
// Nix store's collector if NIXPORT_NIX_STORE_MAX is set. It returns the
// source, its driver (for readiness checks) and what to close.
func openSource(ctx context.Context, cfg *config.Config, store storage.Backend, m *metrics.Metrics, log *logrus.Logger) (source.Source, *nix.Driver, func() error, error) {
	if cfg.Source.Kind == config.SourceBuiltin {
		log.Warn("no package source configured (NIXERY_CHANNEL, NIXERY_PKGS_REPO or NIXERY_PKGS_PATH): serving the built-in offline test package set")
	}
	driver, err := nix.New(nix.Options{
		Source:       cfg.Source,
		Timeout:      cfg.NixTimeout,
		Substituters: cfg.Substituters,
		// The operator's own Nix settings (remote builders, trusted keys
		// of a private cache) come after nixport's, so they win.
		NixConfig: os.Getenv("NIX_CONFIG"),
		Log:       log,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("setting up Nix: %w", err)
	}
	closeAll := driver.Close
	pop, err := nixsource.LoadPopularity(ctx, cfg.PopularityURL)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	// The store's collector, when NIXPORT_NIX_STORE_MAX is set: started
	// here, measuring again after every build, stopped before the driver.
	var afterBuild func()
	if cfg.NixStoreMax > 0 {
		gc, err := nixgc.Start(nixgc.Options{Store: driver, Max: cfg.NixStoreMax, Low: cfg.NixStoreLow, Log: log, Observer: m.NixStore()})
		if err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("starting the Nix store's collector: %w", err)
		}
		afterBuild = gc.Poke
		closeAll = func() error { return errors.Join(gc.Close(), driver.Close()) }
	}
	src, err := nixsource.New(nixsource.Options{
		Driver:        driver,
		Storage:       store,
		Log:           log,
		Names:         nixsource.NameOptions{BasePackages: cfg.BasePackages, MaxPackages: cfg.MaxPackages},
		LayerBudget:   cfg.LayerBudget,
		Popularity:    pop,
		Metrics:       m,
		AfterBuild:    afterBuild,
		MaxImageBytes: cfg.MaxImageBytes,
	})
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return src, driver, closeAll, nil
}
