package config

// SourceKind says where the Nix package set comes from.
type SourceKind string

const (
	// SourceBuiltin is the offline test package set embedded in the binary:
	// the default when no source is configured, so a fresh machine works.
	SourceBuiltin SourceKind = "builtin"
	// SourceChannel is a nixpkgs channel (NIXERY_CHANNEL), fetched as a
	// tarball; the tag "latest" is the configured channel, another tag a
	// channel name or a nixpkgs commit.
	SourceChannel SourceKind = "channel"
	// SourceGit is a git repository (NIXERY_PKGS_REPO); "latest" is its
	// default branch (HEAD), another tag a branch, tag or full commit hash.
	SourceGit SourceKind = "git"
	// SourcePath is a local directory (NIXERY_PKGS_PATH); "latest" is the
	// directory as it is, its only tag unless it is a git checkout, whose
	// branches, git tags and full commit hashes are tags too.
	SourcePath SourceKind = "path"
)

// PackageSource is the configured package set.
type PackageSource struct {
	Kind SourceKind
	// Value is the channel name, the git repository URL, or the directory;
	// empty for SourceBuiltin.
	Value string
}
