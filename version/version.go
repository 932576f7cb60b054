// Package version says which nixport is running: for -version, the
// start-up log line and the health endpoints. It reads what the Go
// toolchain stamps into every binary (the module version, or the VCS
// revision of a build from a checkout), so no build flag is needed;
// a release build may still set Override with -ldflags
// "-X github.com/nixport/nixport/version.Override=v1.2.3".
package version

import (
	"runtime"
	"runtime/debug"
)

// Override, when set at link time, is the version.
var Override string

// String is the version of this binary: Override, else the module version
// ("v1.2.3"), else the VCS revision (12 hex digits, "+dirty" when the tree
// had changes), else "devel".
func String() string {
	if Override != "" {
		return Override
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return fromBuildInfo(info)
}

func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// Go is the Go version the binary was built with.
func Go() string { return runtime.Version() }
