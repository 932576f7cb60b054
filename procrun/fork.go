package procrun

import (
	"os/exec"
	"runtime"
	"sync"
)

// Every process is started from one OS thread that lives as long as the
// server, because Linux's parent death signal (PR_SET_PDEATHSIG, which
// procrun sets on every process) is tied to the thread that forked the
// child, not to the process: the kernel sends it when that thread exits
// (prctl(2): "the 'parent' in this case is considered to be the thread
// that created this process"; https://go.dev/issue/27505).
//
// A Go program forks from whatever thread runs the goroutine that calls
// exec.Cmd.Start, and the runtime exits a thread in one case: when a
// goroutine that called runtime.LockOSThread returns without unlocking
// (https://go.dev/issue/20395). Any code in the binary, a dependency's
// included, may do that, on any thread, at any time; a Nix build forked
// from that thread would then get SIGTERM in the middle of its work. The
// thread of the goroutine below is locked to it and no other goroutine
// ever runs there, and the goroutine never returns: the thread ends only
// with the process, which is when the signal is meant to come.
//
// Others lock the goroutine that starts and waits for a child to its
// thread for the child's life (moby, containerd's go-runc); that costs a
// thread per running process. One forking thread costs one thread in all,
// and forks are serialised anyway (syscall.ForkLock).
//
// A child forked just as the server dies, before the kernel records its
// parent death signal, is covered by the Go runtime: after prctl the child
// compares getppid() with the parent's pid and signals itself if they
// differ (syscall/exec_linux.go). That check cannot see the death of the
// forking thread alone, which is another reason that thread must never
// exit.

// forkRequest asks the forking thread to start cmd, and receives the
// error of exec.Cmd.Start.
type forkRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	forkOnce     sync.Once
	forkRequests = make(chan forkRequest)
)

// startOnForkThread starts cmd from the forking thread.
func startOnForkThread(cmd *exec.Cmd) error {
	forkOnce.Do(func() { go forkLoop() })
	req := forkRequest{cmd: cmd, done: make(chan error, 1)}
	forkRequests <- req
	return <-req.done
}

// forkLoop runs for the life of the process on a thread of its own; see
// above. It is never stopped: stopping it would end its thread.
func forkLoop() {
	runtime.LockOSThread() // never unlocked
	for req := range forkRequests {
		req.done <- req.cmd.Start()
	}
}
