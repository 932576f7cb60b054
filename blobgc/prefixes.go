package blobgc

// Role is what the collector makes of the objects under a prefix.
type Role int

const (
	// RoleRecords: every object is a source.Record, a root: the
	// manifests it names are kept, and all they reference.
	RoleRecords Role = iota + 1
	// RoleReferrers: the referrers index (package referrers): the
	// referrers of a live manifest are live; the entries of a referrer
	// deleted are removed.
	RoleReferrers
	// RoleRoots: kept alive by a Roots set the caller adds (Options.Roots).
	RoleRoots
	// RoleNone: names no blob that must be kept.
	RoleNone
)

// Prefix is a top-level prefix of storage's named objects, who writes
// the objects under it, and what the collector makes of them.
type Prefix struct {
	Prefix string
	Owner  string // the package that writes them
	Role   Role
	Why    string
}

// gcPrefix holds the collector's own objects.
const gcPrefix = "gc/"

// KnownPrefixes are every prefix of storage's named objects. A blob that
// only an object under a prefix missing here names would be deleted: a
// test scans the code for the object names it writes and fails on a
// prefix missing here (or listed here and no longer written).
var KnownPrefixes = []Prefix{
	{"tags/", "builder", RoleRecords, "a tag's last build"},
	{"pinned/", "builder", RoleRecords, "a pinned request's image, served without building"},
	{"plans/", "builder", RoleRecords, "a pinned plan's image, reused instead of building"},
	{"manifests/", "source/nixsource", RoleRecords, "the Nix source's images by their whole input"},
	{"layers/", "source/nixsource", RoleNone, "the Nix source's layer cache: the source refreshes a layer's blob before reusing it and " +
		"builds the layer again when the blob is gone, so a record whose blob is gone is a miss, not a root"},
	{"referrers/", "referrers", RoleReferrers, "the referrers index"},
	{"push/", "push", RoleRoots, "the push repositories: links to their blobs and manifests, tags, writes in progress (push.Roots)"},
	{"auth/", "auth", RoleNone, "the secret registry tokens are signed with"},
	{"health/", "cmd/nixport", RoleNone, "readiness checks of storage"},
	{gcPrefix, "blobgc", RoleNone, "the collector's record of its last run"},
}
