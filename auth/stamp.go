package auth

import (
	"os"
	"syscall"
)

// stampOf is what tells a changed file: size, modification time and inode
// (an editor or a config manager replaces the file by renaming a new one
// over it, which may keep size and time).
func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}
