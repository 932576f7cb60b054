package nix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/requestid"
)

// MaxNameLength bounds one package name (an attribute path).
const MaxNameLength = 200

// namePattern is an attribute path: components of letters, digits, _, +
// and -, not starting with + or -, joined by dots. Nothing else reaches
// Nix, even as data.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_+-]*(\.[A-Za-z0-9_][A-Za-z0-9_+-]*)*$`)

// ValidName says whether name is a package name the driver accepts: an
// attribute path such as "hello", "xorg.xev" or "haskellPackages.pandoc",
// at most MaxNameLength bytes.
func ValidName(name string) bool {
	return len(name) <= MaxNameLength && namePattern.MatchString(name)
}

// storePathPattern is what resolve.nix must return: absolute store paths
// that are safe as command-line arguments (no leading dash, no space).
var storePathPattern = regexp.MustCompile(`^/[^\s]*/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+$`)

// Resolution is what the package set says about the requested names.
type Resolution struct {
	Tag    string
	System string
	// Packages are the names found, in request order.
	Packages []Package
	// Missing are the names not found (or naming something that is not a
	// package), in request order. Resolve returns them with a
	// MANIFEST_UNKNOWN error.
	Missing []string
	// Source is where the package set came from (provenance.go).
	Source Provenance

	// roots keep the derivations (and the resolution file that refers to
	// them) alive until Release.
	roots *Roots
}

// Release drops the GC roots of the resolution's derivations: call it once
// the plan it is part of has been built (its outputs are rooted by then)
// or abandoned. Safe on nil and more than once.
func (r *Resolution) Release() error {
	if r == nil {
		return nil
	}
	return r.roots.Release()
}

// Package is one resolved name.
type Package struct {
	// Name as requested.
	Name string
	// Attr is the attribute path found: differs from Name after the
	// case-insensitive fallback (haskellpackages.pandoc →
	// haskellPackages.pandoc).
	Attr string
	// DrvPath is the derivation (written to the store by the evaluation).
	DrvPath string
	// Outputs to install: meta.outputsToInstall, else the default output;
	// just the named one when the name selects an output (multi.dev).
	Outputs []Output
	// Pname and Version are the derivation's pname and version
	// attributes, where it has them (nixpkgs' mkDerivation does).
	Pname, Version string
	// Meta is what the package's meta says of it.
	Meta Meta
}

// Meta is the part of a package's meta an SBOM uses. resolve.nix passes
// only strings, each cut to a bound.
type Meta struct {
	Description string    `json:"description"`
	Homepage    string    `json:"homepage"`
	Licenses    []License `json:"licenses"`
}

// License is one of meta.license's licenses: its SPDX identifier where
// the package set gives one, and its short name.
type License struct {
	SPDXID string `json:"spdxId"`
	Name   string `json:"name"`
}

// Output is one output of a derivation.
type Output struct {
	Name string `json:"name"` // out, bin, dev, ...
	Path string `json:"path"` // its store path
}

// OutputPaths are the store paths of every package's outputs to install,
// sorted, without duplicates: the roots of the image's closure.
func (r *Resolution) OutputPaths() []string {
	var paths []string
	for _, p := range r.Packages {
		for _, o := range p.Outputs {
			paths = append(paths, o.Path)
		}
	}
	return sortedUnique(paths)
}

// Key identifies the resolved input of an image: its system and output
// paths. Store paths are input-addressed, so two resolutions with the same
// Key give the same closure, whatever the names or tag; a moving tag whose
// Key has not changed needs no new build.
func (r *Resolution) Key() string {
	h := sha256.New()
	fmt.Fprintf(h, "nixport resolution v1\x00%s\x00", r.System)
	for _, p := range r.OutputPaths() {
		fmt.Fprintf(h, "%s\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resolved is one element of resolve.nix's answer. A JSON null leaves a
// string empty.
type resolved struct {
	Name    string   `json:"name"`
	Status  string   `json:"status"` // ok, missing, notPackage
	Attr    string   `json:"attr"`
	DrvPath string   `json:"drvPath"`
	Outputs []Output `json:"outputs"`
	Pname   string   `json:"pname"`
	Version string   `json:"version"`
	Meta    Meta     `json:"meta"`
}

// Resolve looks up every name in the package set at tag, for system (such
// as x86_64-linux), in one nix-instantiate evaluation, which also writes
// the derivations to the store. A dot addresses a nested attribute; a
// top-level attribute that does not exist is looked up again ignoring
// case (an exact match wins, else the lexicographically smallest).
//
// If names are missing, the Resolution lists them and the error is one
// MANIFEST_UNKNOWN naming each of them. A tag that names no version of the
// package set is MANIFEST_UNKNOWN too, naming the tags that work. A package
// set that fails to evaluate gives BUILD_FAILED with Nix's first error
// line, and one that needs a newer Nix BUILD_FAILED naming both versions
// (at once, without Nix, where that is already known); a name or tag that fails validation gives NAME_INVALID or
// TAG_INVALID without running Nix (see CheckTag).
func (d *Driver) Resolve(ctx context.Context, tag, system string, names []string) (*Resolution, error) {
	if !systemPattern.MatchString(system) {
		return nil, errcode.New(errcode.NameInvalid, "invalid system %q", system)
	}
	for _, n := range names {
		if !ValidName(n) {
			return nil, errcode.New(errcode.NameInvalid, "invalid package name %q", n)
		}
	}
	log := requestid.Logger(ctx, d.log).WithFields(logrus.Fields{"op": "resolve", "tag": tag, "system": system, "packages": len(names)})
	spec, err := d.spec(ctx, log, tag)
	if err != nil {
		return nil, err
	}
	res := &Resolution{Tag: tag, System: system, Source: d.provenance(spec, tag, nil)}
	if len(names) == 0 {
		return res, nil
	}

	roots, err := d.newRoots()
	if err != nil {
		return nil, err
	}
	kept := false
	defer func() {
		if !kept {
			if err := roots.Release(); err != nil {
				log.WithError(err).Warn("releasing GC roots")
			}
		}
	}()
	ev, err := d.evaluate(ctx, log, "nix", spec, tag, system, names, filepath.Join(roots.dir, "resolution"))
	if err != nil {
		return nil, err
	}
	res.Source = d.provenance(spec, tag, ev)
	answer := ev.Packages
	if len(answer) != len(names) {
		return nil, fmt.Errorf("nix: the resolution has %d entries for %d names", len(answer), len(names))
	}
	var notPackages []string
	for i, a := range answer {
		if a.Name != names[i] {
			return nil, fmt.Errorf("nix: resolution entry %d is %q, want %q", i, a.Name, names[i])
		}
		switch a.Status {
		case "ok":
			if !storePathPattern.MatchString(a.DrvPath) || len(a.Outputs) == 0 {
				return nil, fmt.Errorf("nix: resolution of %q: unexpected derivation %q with %d outputs", a.Name, a.DrvPath, len(a.Outputs))
			}
			for _, o := range a.Outputs {
				if !storePathPattern.MatchString(o.Path) || !ValidName(o.Name) {
					return nil, fmt.Errorf("nix: resolution of %q: unexpected output %q = %q", a.Name, o.Name, o.Path)
				}
			}
			res.Packages = append(res.Packages, Package{
				Name: a.Name, Attr: a.Attr, DrvPath: a.DrvPath, Outputs: a.Outputs,
				Pname: boundText(a.Pname), Version: boundText(a.Version), Meta: a.Meta.bounded(),
			})
		case "notPackage":
			res.Missing = append(res.Missing, a.Name)
			notPackages = append(notPackages, a.Name)
		case "missing":
			res.Missing = append(res.Missing, a.Name)
		default:
			return nil, fmt.Errorf("nix: resolution of %q: unknown status %q", a.Name, a.Status)
		}
	}
	if len(res.Missing) > 0 {
		log.WithField("missing", res.Missing).Info("packages not found")
		return res, missingError(res.Missing, notPackages)
	}
	res.roots, kept = roots, true
	return res, nil
}

// evaluation is resolve.nix's answer.
type evaluation struct {
	// Rev is the commit evaluated, where it is known (git; a channel
	// whose tarball says it).
	Rev string `json:"rev"`
	// LastModified is the commit time of a git source, in Unix seconds.
	LastModified int64 `json:"lastModified"`
	// NixTooOld: the package set's lib/minver.nix demands Nix Required or
	// newer, and NixVersion is older. Nothing else was evaluated.
	NixTooOld  bool   `json:"nixTooOld"`
	Required   string `json:"required"`
	NixVersion string `json:"nixVersion"`
	// Evaluated: the package set evaluates to an attribute set.
	Evaluated bool       `json:"evaluated"`
	Packages  []resolved `json:"packages"`
}

// evaluate runs resolve.nix for names (none: the package set is only
// evaluated) in the package set that spec, from tag, stands for; kind
// names the process for exec ("nix" for a build's, counted; "check").
// resolve.nix writes its answer to a file in the store that root (a link)
// roots, with the derivations the answer names (see gcroots.go).
//
// A package set known to need a newer Nix fails at once (knownTooOld). A
// git tag that is not a branch of a remote repository is retried once as
// a git tag (refs/tags/…): fetchGit looks names up under refs/heads/ only,
// and which one a tag names is unknown until the remote answers.
func (d *Driver) evaluate(ctx context.Context, log logrus.FieldLogger, kind string, spec sourceSpec, tag, system string, names []string, root string) (*evaluation, error) {
	if err := d.knownTooOld(spec, tag); err != nil {
		log.WithError(err).Debug("the package set needs a newer Nix: not evaluated")
		return nil, err
	}
	if names == nil {
		names = []string{}
	}
	namesJSON, err := json.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("nix: encoding names: %w", err)
	}
	for attempt := 0; ; attempt++ {
		args := []string{d.resolveFile, "--add-root", root}
		if spec.Kind == "git" {
			// See a branch's new commits at once (fetchGit caches refs
			// for an hour by default).
			args = append(args, "--option", "tarball-ttl", "0")
		}
		args = append(args,
			"--argstr", "names", string(namesJSON),
			"--argstr", "source", spec.json(),
			"--argstr", "system", system)
		res, err := d.exec(ctx, log, kind, d.dir, "nix-instantiate", args...)
		if err != nil {
			return nil, err
		}
		if res.ExitCode == 0 {
			data, err := readRooted(root)
			if err != nil {
				return nil, err
			}
			return d.readEvaluation(log, spec, tag, data)
		}
		if attempt == 0 && spec.Kind == "git" && spec.Git.Ref != "" && spec.Git.Ref != "HEAD" &&
			strings.Contains(res.Tail, "couldn't find remote ref refs/heads/"+spec.Git.Ref) {
			log.WithField("ref", spec.Git.Ref).Debug("not a branch; trying it as a git tag")
			g := *spec.Git
			g.Ref = "refs/tags/" + g.Ref
			spec.Git = &g
			continue
		}
		if spec.Kind == "git" && unknownGitRevision.MatchString(res.Tail) {
			log.WithField("stderr_tail", stderrTail(res.Tail, 5)).Info("tag names nothing in the git repository")
			return nil, errcode.New(errcode.ManifestUnknown,
				"tag %q names no branch, tag or commit of the package repository; tags that work: %s, a branch, a git tag or a full commit hash",
				d.tagOf(spec), LatestTag)
		}
		if required, ok := abortedForNix(res.Tail); ok {
			log.WithField("required_nix", required).Info("the package set aborted: it needs a newer Nix")
			return nil, d.tooOld(spec, tag, &evaluation{Required: required})
		}
		return nil, failure(d.evalWhat(), "nix-instantiate", res)
	}
}

// maxResolution bounds the resolution file read back from the store: a
// few hundred bytes per name.
const maxResolution = 16 << 20

// readRooted reads the store file that the GC root link points to.
func readRooted(link string) ([]byte, error) {
	target, err := os.Readlink(link)
	if err != nil {
		return nil, fmt.Errorf("nix: reading the resolution's GC root: %w", err)
	}
	if !storePathPattern.MatchString(target) {
		return nil, fmt.Errorf("nix: the resolution's GC root points to %q, not a store path", target)
	}
	f, err := os.Open(target)
	if err != nil {
		return nil, fmt.Errorf("nix: reading the resolution: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxResolution+1))
	if err != nil {
		return nil, fmt.Errorf("nix: reading the resolution: %w", err)
	}
	if len(data) > maxResolution {
		return nil, fmt.Errorf("nix: the resolution %s is larger than %d bytes", target, maxResolution)
	}
	return data, nil
}

// readEvaluation reads resolve.nix's answer: the packages, or that the
// package set needs a newer Nix (an error); the revision of "latest" is
// noted.
func (d *Driver) readEvaluation(log logrus.FieldLogger, spec sourceSpec, tag string, out []byte) (*evaluation, error) {
	var ev evaluation
	if err := json.Unmarshal(out, &ev); err != nil {
		return nil, fmt.Errorf("nix: reading the resolution: %w", err)
	}
	if ev.Rev != "" && !commitHash.MatchString(ev.Rev) {
		log.WithField("rev", clip(ev.Rev)).Debug("the package set names no commit as its revision")
		ev.Rev = ""
	}
	if ev.NixTooOld {
		log.WithFields(logrus.Fields{"required_nix": ev.Required, "rev": ev.Rev}).Info("the package set needs a newer Nix")
		return nil, d.tooOld(spec, tag, &ev)
	}
	if !ev.Evaluated {
		return nil, errcode.New(errcode.BuildFailed, "%s: the package set is not an attribute set of packages", d.evalWhat())
	}
	if tag == LatestTag && spec.Kind != "path" {
		d.noteRevision(ev.Rev)
	}
	return &ev, nil
}

// unknownGitRevision matches what git and Nix print when a ref or commit
// does not exist: a local repository ("unknown revision"), a remote one
// ("couldn't find remote ref") and a missing commit ("Cannot find Git
// revision").
var unknownGitRevision = regexp.MustCompile(`unknown revision or path not in the working tree|couldn't find remote ref|Cannot find Git revision`)

// tagOf recovers the requested tag from a git spec, for messages.
func (d *Driver) tagOf(spec sourceSpec) string {
	if spec.Git == nil {
		return ""
	}
	if spec.Git.Rev != "" {
		return spec.Git.Rev
	}
	return strings.TrimPrefix(spec.Git.Ref, "refs/tags/")
}

func (d *Driver) evalWhat() string {
	switch d.opts.Source.Kind {
	case config.SourceGit, config.SourceChannel:
		return "fetching or evaluating the package set failed"
	}
	return "evaluating the package set failed"
}

func missingError(missing, notPackages []string) error {
	not := map[string]bool{}
	for _, n := range notPackages {
		not[n] = true
	}
	parts := make([]string, len(missing))
	for i, n := range missing {
		parts[i] = n
		if not[n] {
			parts[i] += " (not a package)"
		}
	}
	noun := "package"
	if len(missing) > 1 {
		noun = "packages"
	}
	e := errcode.New(errcode.ManifestUnknown, "%s not found: %s", noun, strings.Join(parts, ", "))
	e.Detail = map[string][]string{"missing": append([]string(nil), missing...)}
	return e
}

func sortedUnique(s []string) []string {
	out := append(make([]string, 0, len(s)), s...)
	sort.Strings(out)
	j := 0
	for i, v := range out {
		if i == 0 || v != out[j-1] {
			out[j] = v
			j++
		}
	}
	return out[:j]
}
