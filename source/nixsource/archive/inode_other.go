//go:build !unix

package archive

import "io/fs"

type inode struct{}

// inodeOf reports no inode: hard links are archived as copies.
func inodeOf(fs.FileInfo) (inode, bool) { return inode{}, false }
