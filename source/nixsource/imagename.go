package nixsource

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/nix"
)

// Image names follow Nixery's rules, unchanged: every path component of
// the repository name is a package (an attribute path of the package set,
// a dot addressing a nested attribute: xorg.xev), except meta-packages at
// the front of the path:
//
//	shell    adds bashInteractive, coreutils, moreutils and nano
//	arm64    builds for aarch64-linux
//	amd64    builds for x86_64-linux (the default)
//	nonroot  runs as user nonroot (65532:65532): /etc/passwd and
//	         /etc/group entries for root, nobody and nonroot, and
//	         /home/nonroot owned by it (nonroot.go)
//
// Every image also gets the base packages (cacert and iana-etc by default).
// The package list is de-duplicated and sorted, so git/htop and htop/git
// are the same image.

// DefaultMaxPackages bounds the components of an image name by default.
const DefaultMaxPackages = 64

// Systems the meta-packages select.
const (
	SystemAMD64 = "x86_64-linux"
	SystemARM64 = "aarch64-linux"
)

// shellPackages are what the shell meta-package adds.
var shellPackages = []string{"bashInteractive", "coreutils", "moreutils", "nano"}

// NameOptions configure ParseImageName.
type NameOptions struct {
	// BasePackages are added to every image (NIXPORT_BASE_PACKAGES); nil
	// or empty adds none.
	BasePackages []string
	// MaxPackages bounds the number of path components (meta-packages
	// included); zero or less means DefaultMaxPackages.
	MaxPackages int
}

// DefaultNameOptions are Nixery's: base packages cacert and iana-etc, at
// most DefaultMaxPackages components.
func DefaultNameOptions() NameOptions {
	return NameOptions{BasePackages: []string{"cacert", "iana-etc"}, MaxPackages: DefaultMaxPackages}
}

// ImageRequest is a parsed image name: what to build, whatever the order
// or repetition of the name's components.
type ImageRequest struct {
	// Packages are the attribute paths to install, sorted and unique:
	// the named ones, those meta-packages add and the base packages.
	Packages []string
	// System is the Nix system to build for (x86_64-linux, aarch64-linux).
	System string
	// NonRoot: the image runs as the nonroot user (the nonroot
	// meta-package).
	NonRoot bool
}

// Key identifies the image a request asks for, without its tag: two names
// for the same image (git/htop, htop/git, shell/htop/htop) share it.
func (r ImageRequest) Key() string {
	k := r.System + ":" + strings.Join(r.Packages, ",")
	if r.NonRoot {
		k += ":nonroot"
	}
	return k
}

// ParseImageName parses a repository name such as "shell/git/htop" into an
// ImageRequest. A name that is empty, has an empty or invalid component, or
// too many components is an *errcode.Error NAME_INVALID naming the
// problem. Package names must be attribute paths of letters, digits, _, +
// and - (not starting with + or -) joined by dots; nothing else ever reaches
// Nix.
func ParseImageName(name string, opts NameOptions) (ImageRequest, error) {
	max := opts.MaxPackages
	if max <= 0 {
		max = DefaultMaxPackages
	}
	if name == "" {
		return ImageRequest{}, errcode.New(errcode.NameInvalid, "empty image name: name at least one package")
	}
	if n := strings.Count(name, "/") + 1; n > max {
		return ImageRequest{}, errcode.New(errcode.NameInvalid, "too many packages in the image name: %d, at most %d", n, max)
	}
	components := strings.Split(name, "/")

	system := ""
	nonRoot := false
	packages := make([]string, 0, len(components)+len(shellPackages)+len(opts.BasePackages))
	meta := true // still at the front of the path
	for i, c := range components {
		if meta {
			switch c {
			case "shell":
				packages = append(packages, shellPackages...)
				continue
			case "nonroot":
				nonRoot = true
				continue
			case "arm64", "amd64":
				s := SystemARM64
				if c == "amd64" {
					s = SystemAMD64
				}
				if system != "" && system != s {
					return ImageRequest{}, errcode.New(errcode.NameInvalid, "image name %.100q asks for both arm64 and amd64", name)
				}
				system = s
				continue
			}
			meta = false
		}
		if c == "" {
			return ImageRequest{}, errcode.New(errcode.NameInvalid, "image name %.100q has an empty component (at %d)", name, i+1)
		}
		if !nix.ValidName(c) {
			return ImageRequest{}, errcode.New(errcode.NameInvalid,
				"invalid package name %.64q: use attribute paths of letters, digits, _, + and - joined by dots, at most %d characters",
				c, nix.MaxNameLength)
		}
		packages = append(packages, c)
	}
	for _, b := range opts.BasePackages {
		if !nix.ValidName(b) {
			return ImageRequest{}, fmt.Errorf("builder: invalid base package %q in the configuration", b)
		}
		packages = append(packages, b)
	}
	if system == "" {
		system = SystemAMD64
	}
	slices.Sort(packages)
	return ImageRequest{Packages: slices.Compact(packages), System: system, NonRoot: nonRoot}, nil
}
