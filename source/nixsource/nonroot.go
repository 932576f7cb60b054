package nixsource

import (
	"github.com/nixport/nixport/source/nixsource/archive"
)

// The nonroot meta-package (Nixery's issue 136): the image's config runs
// it as user nonroot, and its customisation layer holds what a user
// needs, the way distroless's nonroot images do: /etc/passwd and
// /etc/group entries for root, nobody and nonroot (so that tools find a
// name and a home for the uid), and a home directory nonroot owns. The
// uid and gid are distroless's, so images and volumes prepared for those
// work here. Without the meta-package an image runs as root, as before.
const (
	nonRootUID = 65532
	// NonRootUser is the config's User of a nonroot image.
	NonRootUser = "65532:65532"
	nonRootHome = "/home/nonroot"
)

// nonRootEntries are the files the customisation layer of a nonroot image
// holds. They replace a package's /etc/passwd or /etc/group (logged as a
// conflict): an image has one user database.
func nonRootEntries() []archive.Entry {
	return []archive.Entry{
		{Path: "/etc/group", Mode: 0o644, Content: []byte(
			"root:x:0:\n" +
				"nobody:x:65534:\n" +
				"nonroot:x:65532:\n")},
		{Path: "/etc/passwd", Mode: 0o644, Content: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:" + nonRootHome + ":/sbin/nologin\n")},
		{Path: nonRootHome, Dir: true, Mode: 0o700, UID: nonRootUID, GID: nonRootUID},
	}
}
