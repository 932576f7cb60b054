//go:build unix

package archive

import (
	"io/fs"
	"syscall"
)

// inode identifies a file on the host.
type inode struct{ dev, ino uint64 }

// inodeOf returns the inode of a file with more than one link: a candidate
// for a hard link entry.
func inodeOf(fi fs.FileInfo) (inode, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 {
		return inode{}, false
	}
	return inode{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}
