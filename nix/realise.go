package nix

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/procrun"
	"github.com/nixport/nixport/requestid"
)

// builderFailed is how Nix names a derivation whose builder failed.
var builderFailed = regexp.MustCompile(`builder for '([^']+)' failed(?: with exit code (\d+))?`)

// Realise builds (or substitutes) the outputs to install of every resolved
// package in one nix-store --realise call, and roots them in a directory
// of the driver's until Release. A failed build is BUILD_FAILED naming
// the derivations whose builders failed, with the end of the build output;
// the log gets the stderr tail.
// The derivations stay rooted by the Resolution until it is released.
func (d *Driver) Realise(ctx context.Context, res *Resolution) (*Roots, error) {
	roots, err := d.newRoots()
	if err != nil {
		return nil, err
	}
	if len(res.Packages) == 0 {
		return roots, nil
	}
	log := requestid.Logger(ctx, d.log).WithFields(logrus.Fields{"op": "realise", "tag": res.Tag, "system": res.System, "packages": len(res.Packages)})

	// One argument per derivation: drv!out1,out2 builds the derivation
	// and roots just those outputs (a substituter fetches only them).
	var order []string
	outs := map[string][]string{}
	for _, p := range res.Packages {
		if _, ok := outs[p.DrvPath]; !ok {
			order = append(order, p.DrvPath)
		}
		for _, o := range p.Outputs {
			outs[p.DrvPath] = append(outs[p.DrvPath], o.Name)
		}
	}
	args := []string{"--realise", "--add-root", filepath.Join(roots.dir, "r")}
	for _, drv := range order {
		args = append(args, drv+"!"+strings.Join(sortedUnique(outs[drv]), ","))
	}
	r, err := d.run(ctx, log, "nix-store", args...)
	if err == nil && r.ExitCode != 0 {
		err = buildFailure(res, r)
	}
	if err != nil {
		if rerr := roots.Release(); rerr != nil {
			log.WithError(rerr).Warn("releasing GC roots")
		}
		return nil, err
	}
	if ob := observationOf(ctx); ob != nil {
		ob.realised()
	}
	return roots, nil
}

// buildFailure explains a failed nix-store --realise. Exit codes 100-104
// are build failures (100 plus bits for timeout, hash mismatch, check
// failure); 1 is anything else, such as a derivation for a system this
// machine cannot build. A build failure names the packages whose builders
// failed and ends with the last lines of the build output, where the
// builder says why (bounded, see clientTail).
func buildFailure(res *Resolution, r procrun.Result) error {
	if r.ExitCode < 100 || r.ExitCode > 104 {
		return failure("building the image failed", "nix-store", r)
	}
	byDrv := map[string]string{}
	for _, p := range res.Packages {
		byDrv[p.DrvPath] = p.Name
	}
	var failed []string
	seen := map[string]bool{}
	for _, l := range stderrLines(r.Tail) {
		m := builderFailed.FindStringSubmatch(l)
		if m == nil || seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		s := m[1]
		if name, ok := byDrv[m[1]]; ok {
			s = fmt.Sprintf("package %s (%s)", name, m[1])
		}
		if m[2] != "" {
			s += " failed with exit code " + m[2]
		} else {
			s += " failed"
		}
		failed = append(failed, s)
	}
	if len(failed) == 0 {
		return failure("building the image failed", "nix-store", r)
	}
	return errcode.Wrap(errcode.BuildFailed,
		fmt.Errorf("nix-store exited with code %d: %s", r.ExitCode, stderrTail(r.Tail, 20)),
		"building the image failed: %s%s", clip(strings.Join(failed, "; ")), clientTail.Suffix("the build output", r.Tail))
}
