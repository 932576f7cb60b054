package nix

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
)

// LatestTag is the tag that means "the source's current version".
const LatestTag = "latest"

var (
	// A full git commit hash: the only tag that pins a git or channel
	// source.
	commitHash = regexp.MustCompile(`^[0-9a-f]{40}$`)
	// The OCI distribution spec's tag pattern.
	tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
	// A Nix system double such as x86_64-linux.
	systemPattern = regexp.MustCompile(`^[a-z0-9_]+-[a-z0-9_]+$`)
)

// Pinned says whether tag names a fixed version of the configured package
// set, so that an image built for it may be cached forever:
//
//   - git and channel sources, and a path source that is a git checkout,
//     with a full 40-hex commit hash as tag: pinned.
//   - git with "latest" (the default branch's HEAD), a branch or a tag name,
//     and channels by name ("latest" is the configured channel): moving
//     targets; a branch can gain commits and a git tag can be moved.
//   - a local path at "latest": a moving target; the directory can change
//     at any time. In a git checkout a branch or git tag moves too.
//   - builtin: fixed for one nixport binary, but not across upgrades, and
//     its busybox comes from the host: treated as moving, so that nothing
//     built from it outlives the binary in a shared cache.
//
// A moving target must be resolved again (one cheap evaluation) before a
// cached image is reused; the Resolution's Key then says whether anything
// changed. Pinned says nothing of whether the tag exists: see CheckTag.
func (d *Driver) Pinned(tag string) bool {
	switch d.opts.Source.Kind {
	case config.SourceGit, config.SourceChannel:
		return commitHash.MatchString(tag)
	case config.SourcePath:
		return d.checkout != "" && commitHash.MatchString(tag)
	default:
		return false
	}
}

// CheckTag says, without running anything, whether tag can name a version
// of the configured package set:
//
//   - TAG_INVALID (400) for what is no tag at all (the OCI tag pattern),
//     and, where a tag is a git ref (git, channel, a path that is a git
//     checkout), for a name git cannot give a branch (git check-ref-format:
//     "a..b", "main.lock", "v1."): it can name nothing.
//   - MANIFEST_UNKNOWN (404) for any tag but "latest" where the package set
//     has one version: builtin, and a path that is no git checkout.
//
// A tag that passes may still name nothing (a branch that does not exist):
// Resolve says so, also with MANIFEST_UNKNOWN.
func (d *Driver) CheckTag(tag string) error {
	if !tagPattern.MatchString(tag) {
		return errcode.New(errcode.TagInvalid, "invalid tag %q", tag)
	}
	switch d.opts.Source.Kind {
	case config.SourceBuiltin, config.SourcePath:
		if tag == LatestTag {
			return nil
		}
		if d.checkout == "" {
			return errcode.New(errcode.ManifestUnknown,
				"tag %q names no version of the package set: it has one, tag %q", tag, LatestTag)
		}
	}
	if !validRefName(tag) {
		return errcode.New(errcode.TagInvalid, "invalid tag %q: not a valid git branch or tag name", tag)
	}
	return nil
}

// validRefName applies git check-ref-format's rules for refs/heads/<tag> to
// a tag that matches tagPattern (so it holds no "/", no control character,
// none of " ~^:?*[\" and no "@{", and does not start with "." or "-"):
// it may not contain "..", nor end with "." or ".lock".
func validRefName(tag string) bool {
	return !strings.Contains(tag, "..") && !strings.HasSuffix(tag, ".") && !strings.HasSuffix(tag, ".lock")
}

// sourceSpec is the JSON form of the package source that resolve.nix reads
// (its "source" argument).
type sourceSpec struct {
	Kind string   `json:"kind"`           // path, git or channel
	Path string   `json:"path,omitempty"` // path: absolute directory
	URL  string   `json:"url,omitempty"`  // channel: tarball URL
	Git  *gitSpec `json:"git,omitempty"`  // git: builtins.fetchGit's argument
}

type gitSpec struct {
	URL     string `json:"url"`
	Ref     string `json:"ref,omitempty"`
	Rev     string `json:"rev,omitempty"`
	AllRefs bool   `json:"allRefs,omitempty"`
}

// channelArchive is where nixpkgs channels and commits are fetched from:
// a channel (nixos-unstable, nixos-24.05) is a branch of the nixpkgs
// repository, so one URL form serves both.
const channelArchive = "https://github.com/NixOS/nixpkgs/archive/"

// spec is the source for tag. For git, a branch or tag name is first tried
// as a branch (refs/heads/tag); evaluate retries a remote's tag. For a
// path that is a git checkout, any tag but "latest" is looked up in it
// with git (checkoutRev) and built from exactly that commit.
func (d *Driver) spec(ctx context.Context, log logrus.FieldLogger, tag string) (sourceSpec, error) {
	if err := d.CheckTag(tag); err != nil {
		return sourceSpec{}, err
	}
	src := d.opts.Source
	switch src.Kind {
	case config.SourceBuiltin, config.SourcePath:
		if tag == LatestTag {
			// The directory as it is, uncommitted changes included.
			return sourceSpec{Kind: "path", Path: d.pkgsDir}, nil
		}
		// CheckTag lets other tags through only for a git checkout.
		rev, err := d.checkoutRev(ctx, log, tag)
		if err != nil {
			return sourceSpec{}, err
		}
		u := url.URL{Scheme: "file", Path: d.checkout}
		return sourceSpec{Kind: "git", Git: &gitSpec{URL: u.String(), Rev: rev}}, nil
	case config.SourceGit:
		g := &gitSpec{URL: src.Value}
		switch {
		case tag == LatestTag:
			// The remote's default branch. fetchGit's own default is
			// "master", not HEAD.
			g.Ref = "HEAD"
		case commitHash.MatchString(tag):
			// A commit on no named ref is found only with allRefs.
			g.Rev, g.AllRefs = tag, true
		default:
			g.Ref = tag
		}
		return sourceSpec{Kind: "git", Git: g}, nil
	case config.SourceChannel:
		ref := src.Value
		if tag != LatestTag {
			ref = tag
		}
		return sourceSpec{Kind: "channel", URL: channelArchive + url.PathEscape(ref) + ".tar.gz"}, nil
	}
	return sourceSpec{}, fmt.Errorf("nix: unknown package source kind %q", src.Kind)
}

func (s sourceSpec) json() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("nix: encoding a source spec: %v", err)) // plain strings: cannot fail
	}
	return string(b)
}
