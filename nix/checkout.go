package nix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
)

// A path source (NIXERY_PKGS_PATH) that is the top of a git work tree, as
// a nixpkgs checkout is, has more versions than the directory: its
// branches, git tags and commits. "latest" stays the directory as it is;
// any other tag is looked up here with git and built from exactly the
// commit it names (fetchGit with that rev), never from the working tree.
//
// The tag reaches git only as data: CheckTag has already held it to the
// OCI pattern and git's ref-name rules, so "refs/heads/<tag>^{commit}" is
// one revision, never an option or a range.

// maxListedBranches bounds the branches an unknown tag's message names.
const maxListedBranches = 10

// findCheckout returns dir if it is the top of a git work tree (it holds
// .git, a directory or, in a linked work tree or submodule, a file: what
// Nix itself looks for) and git is on PATH, else "".
func findCheckout(dir string, log logrus.FieldLogger) string {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		return ""
	}
	if _, err := exec.LookPath("git"); err != nil {
		log.WithField("path", dir).Warn("the package set is a git checkout but git is not on PATH: only the tag latest works")
		return ""
	}
	return dir
}

// checkoutRev is the commit tag names in the checkout: a full commit hash
// that is there, else the branch refs/heads/<tag>, else the git tag
// refs/tags/<tag>. One that names nothing is MANIFEST_UNKNOWN, naming the
// tags that work.
func (d *Driver) checkoutRev(ctx context.Context, log logrus.FieldLogger, tag string) (string, error) {
	log = log.WithFields(logrus.Fields{"op": "git", "tag": tag})
	candidates := []string{"refs/heads/" + tag, "refs/tags/" + tag}
	if commitHash.MatchString(tag) {
		candidates = []string{tag}
	}
	for _, rev := range candidates {
		res, err := d.runGit(ctx, log, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
		if err != nil {
			return "", err
		}
		switch res.ExitCode {
		case 0:
			commit := strings.TrimSpace(string(res.Stdout))
			if !commitHash.MatchString(commit) {
				return "", fmt.Errorf("nix: git rev-parse %s printed %q, not a commit hash", rev, clip(commit))
			}
			log.WithField("commit", commit).Debug("tag resolved in the package set's checkout")
			return commit, nil
		case 1:
			// No such revision, or not a commit.
		default:
			return "", fmt.Errorf("nix: git rev-parse %s in %s exited with code %d: %s",
				rev, d.checkout, res.ExitCode, stderrTail(res.Tail, 5))
		}
	}
	return "", errcode.New(errcode.ManifestUnknown,
		"tag %q names no branch, git tag or commit of the package set's checkout; tags that work: %s",
		tag, d.workingTags(ctx, log))
}

// workingTags describes the tags that work in the checkout, for a client
// told that its tag does not: latest, a full commit hash, and the branches
// (the first maxListedBranches of them by name).
func (d *Driver) workingTags(ctx context.Context, log logrus.FieldLogger) string {
	const fixed = "latest (the directory as it is), a full commit hash"
	res, err := d.runGit(ctx, log, "for-each-ref", fmt.Sprintf("--count=%d", maxListedBranches+1),
		"--format=%(refname:lstrip=2)", "refs/heads/")
	if err != nil || res.ExitCode != 0 {
		return fixed + ", a branch or a git tag"
	}
	refs := strings.Fields(string(res.Stdout))
	var branches []string
	for _, b := range refs[:min(len(refs), maxListedBranches)] {
		// Only names a client could send back as a tag.
		if tagPattern.MatchString(b) && validRefName(b) {
			branches = append(branches, b)
		}
	}
	if len(branches) == 0 {
		return fixed + " or a git tag"
	}
	list := strings.Join(branches, ", ")
	if len(refs) > maxListedBranches {
		list += ", …"
	}
	return fixed + ", a git tag, or a branch: " + list
}
