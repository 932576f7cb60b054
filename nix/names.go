package nix

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/requestid"
)

// PathName is the name and version of one store path of a closure, for an
// SBOM.
type PathName struct {
	Name, Version string
	// Output is the derivation's output the path is (out, bin, …), where
	// the derivation is known.
	Output string
	// From says where Name and Version come from: NameFromDerivation or
	// NameFromStorePath.
	From string
}

// Where a PathName comes from.
const (
	// NameFromDerivation: the derivation's env.pname and env.version (as
	// nixpkgs' mkDerivation sets them), else its env.name split as Nix's
	// builtins.parseDrvName splits it.
	NameFromDerivation = "derivation"
	// NameFromStorePath: the store path's name split the same way (no
	// derivation at hand).
	NameFromStorePath = "store path name"
)

// Names reads the name and version of every path of c from the derivation
// that built it: one nix show-derivation of every deriver the store still
// holds (the closure's derivations stay rooted with the plan's
// resolution). A path without one at hand (added to the store rather
// than built, substituted without its derivation), or every path when
// that process fails, is named from its store path name instead. One Nix
// process at most, none when no deriver is in the store; only the
// caller's context ending or NIX_TIMEOUT is an error.
func (d *Driver) Names(ctx context.Context, c *Closure) (map[string]PathName, error) {
	var derivers []string
	seen := map[string]bool{}
	for _, p := range c.Paths {
		if p.Deriver == "" || seen[p.Deriver] {
			continue
		}
		seen[p.Deriver] = true
		if _, err := os.Stat(p.Deriver); err == nil {
			derivers = append(derivers, p.Deriver)
		}
	}
	drvs := map[string]derivationJSON{}
	if len(derivers) > 0 {
		log := requestid.Logger(ctx, d.log).WithFields(logrus.Fields{"op": "names", "derivations": len(derivers)})
		r, err := d.run(ctx, log, "nix", append([]string{"show-derivation", "--"}, sortedUnique(derivers)...)...)
		switch {
		case err != nil:
			return nil, err
		case r.ExitCode != 0:
			log.WithField("stderr_tail", stderrTail(r.Tail, 5)).Warn("reading the closure's derivations failed: its paths are named from their store paths")
		default:
			if drvs, err = parseDerivations(r.Stdout); err != nil {
				log.WithError(err).Warn("reading the closure's derivations failed: its paths are named from their store paths")
			}
		}
	}
	names := make(map[string]PathName, len(c.Paths))
	for _, p := range c.Paths {
		names[p.Path] = nameOf(p, drvs)
	}
	return names, nil
}

// derivationJSON is the part of one entry of nix show-derivation's output
// that names a path.
type derivationJSON struct {
	Outputs map[string]struct {
		Path string `json:"path"`
	} `json:"outputs"`
	Env map[string]string `json:"env"`
}

// parseDerivations reads nix show-derivation's JSON: an object keyed by
// derivation path (a full store path up to Nix 2.2x, a base name in
// later versions), keyed here by base name.
func parseDerivations(data []byte) (map[string]derivationJSON, error) {
	var raw map[string]derivationJSON
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	out := make(map[string]derivationJSON, len(raw))
	for k, v := range raw {
		out[filepath.Base(k)] = v
	}
	return out, nil
}

// nameOf names path p from its derivation in drvs, else from its store
// path name.
func nameOf(p PathInfo, drvs map[string]derivationJSON) PathName {
	if drv, ok := drvs[filepath.Base(p.Deriver)]; ok && p.Deriver != "" {
		n := PathName{From: NameFromDerivation}
		for o, out := range drv.Outputs {
			if out.Path != "" && filepath.Base(out.Path) == filepath.Base(p.Path) {
				n.Output = o
			}
		}
		if pname := drv.Env["pname"]; pname != "" {
			n.Name, n.Version = pname, drv.Env["version"]
		} else {
			n.Name, n.Version = ParseDrvName(drv.Env["name"])
		}
		if n.Name != "" {
			n.Name, n.Version = boundText(n.Name), boundText(n.Version)
			return n
		}
	}
	base := filepath.Base(p.Path)
	if _, name, ok := strings.Cut(base, "-"); ok {
		base = name
	}
	n := PathName{From: NameFromStorePath}
	n.Name, n.Version = ParseDrvName(base)
	return n
}

// ParseDrvName splits a derivation name as Nix's builtins.parseDrvName
// does: the version starts after the first dash that is followed by
// something other than a letter ("hello-2.12.1" is hello 2.12.1,
// "python3.11-requests-2.31" is python3.11-requests 2.31, "chain-c1" has
// no version).
func ParseDrvName(s string) (name, version string) {
	for i := 0; i+1 < len(s); i++ {
		c := s[i+1]
		if s[i] == '-' && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
