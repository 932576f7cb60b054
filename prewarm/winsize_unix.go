//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package prewarm

import (
	"os"
	"syscall"
	"unsafe"
)

// terminalSize is the columns and rows of the terminal f, 0 where it
// cannot be told.
func terminalSize(f *os.File) (cols, rows int) {
	var ws struct{ row, col, xpixel, ypixel uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
	if errno != 0 {
		return 0, 0
	}
	return int(ws.col), int(ws.row)
}
