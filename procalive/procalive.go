// Package procalive tells whether a process that left something behind (a
// build lease, a temporary file, an output directory) is dead, so that a
// server restarted after a crash can clean up or take over at once instead
// of waiting for a timeout.
//
// A pid alone cannot say it: pids are reused, and a pid means nothing on
// another machine or in another PID namespace (two containers on one node,
// sharing its host name, each have their own pid 1). So a process is
// identified by an ID: the pid space it lives in (this boot of the kernel
// and its PID namespace), its pid, and its start time (clock ticks after
// boot, from /proc/PID/stat). Within one pid space, a pid and a start time
// name one process for as long as the machine runs.
//
// Dead answers true only when it knows: the ID is of this pid space, and no
// process has that pid, or the one that has it is a zombie, or it started at
// another time (the pid was reused). An ID of another pid space, or a
// process it cannot inspect, is not dead: the caller then falls back on its
// own rule (a lease's expiry, a file's age). Wrongly calling a live process
// dead would let two servers build one image, or remove a file being
// written; wrongly calling a dead one alive only costs that wait.
//
// This is Linux's /proc; elsewhere Self fails and nothing is ever dead.
package procalive

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ID identifies one process within a pid space. The zero ID is no process.
type ID struct {
	// PID is the process id.
	PID int
	// Start is when the process started, in clock ticks after boot.
	Start uint64
	// Space names the pid space: a hash of the kernel's boot id and the
	// process's PID namespace; 16 hex digits.
	Space string
}

// spaceLen is the length of ID.Space.
const spaceLen = 16

// String is "PID.START.SPACE": digits, dots and hex digits only, so that it
// fits file names and lease holders.
func (id ID) String() string {
	return strconv.Itoa(id.PID) + "." + strconv.FormatUint(id.Start, 10) + "." + id.Space
}

// Parse reads an ID written by String.
func Parse(s string) (ID, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ID{}, fmt.Errorf("process id %q: want PID.START.SPACE", s)
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 || parts[0] != strconv.Itoa(pid) {
		return ID{}, fmt.Errorf("process id %q: bad pid", s)
	}
	start, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || parts[1] != strconv.FormatUint(start, 10) {
		return ID{}, fmt.Errorf("process id %q: bad start time", s)
	}
	if !isSpace(parts[2]) {
		return ID{}, fmt.Errorf("process id %q: bad pid space", s)
	}
	return ID{PID: pid, Start: start, Space: parts[2]}, nil
}

func isSpace(s string) bool {
	if len(s) != spaceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// procRoot is where /proc is; tests do not change it, but naming it once
// keeps the paths together.
const procRoot = "/proc"

// self is this process's ID, computed once.
var self = sync.OnceValues(func() (ID, error) {
	space, err := thisSpace()
	if err != nil {
		return ID{}, err
	}
	pid := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		return ID{}, fmt.Errorf("reading this process's start time: %w", err)
	}
	return ID{PID: pid, Start: st.start, Space: space}, nil
})

// Self returns this process's ID. It fails where /proc cannot tell it.
func Self() (ID, error) { return self() }

// Of returns the ID of the running process pid of this pid space.
func Of(pid int) (ID, error) {
	me, err := Self()
	if err != nil {
		return ID{}, err
	}
	st, err := readStat(pid)
	if err != nil {
		return ID{}, fmt.Errorf("reading the start time of process %d: %w", pid, err)
	}
	return ID{PID: pid, Start: st.start, Space: me.Space}, nil
}

// thisSpace names this process's pid space: its kernel boot and its PID
// namespace.
func thisSpace() (string, error) {
	boot, err := os.ReadFile(procRoot + "/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading the boot id: %w", err)
	}
	ns, err := os.Readlink(procRoot + "/self/ns/pid")
	if err != nil {
		return "", fmt.Errorf("reading the PID namespace: %w", err)
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(boot)) + "\x00" + ns))
	return hex.EncodeToString(sum[:])[:spaceLen], nil
}

// Dead reports whether the process id names is known to have ended: see
// the package comment. It is false for this process itself, for IDs of
// other pid spaces, and whenever it cannot tell.
func Dead(id ID) bool {
	me, err := Self()
	if err != nil || id.Space != me.Space || id.PID <= 0 {
		return false
	}
	if id.PID == me.PID {
		return id.Start != me.Start
	}
	// kill(pid, 0) sees every process of the namespace, whoever owns it;
	// /proc may hide other users' processes (hidepid).
	if err := syscall.Kill(id.PID, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	st, err := readStat(id.PID)
	if err != nil {
		// Ended just now (it existed a moment ago), or hidden from us:
		// ask again, and give up if it still cannot be read.
		return errors.Is(syscall.Kill(id.PID, 0), syscall.ESRCH)
	}
	return st.start != id.Start || st.state == 'Z' || st.state == 'X'
}

// stat is what Dead needs of /proc/PID/stat.
type stat struct {
	state byte
	start uint64
}

func readStat(pid int) (stat, error) {
	data, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	return parseStat(string(data))
}

// parseStat reads the state (field 3) and start time (field 22) of a line
// of /proc/PID/stat. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself: fields are counted after the last
// ")".
func parseStat(line string) (stat, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return stat{}, errors.New("proc stat: no command name")
	}
	fields := strings.Fields(line[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return stat{}, errors.New("proc stat: too few fields")
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("proc stat: start time: %w", err)
	}
	return stat{state: fields[0][0], start: start}, nil
}

// NamePrefix returns prefix followed by this process's ID and a dash: the
// start of the name of a temporary file or directory it makes, so that a
// later process can tell from the name whether the writer is dead
// (WriterOf). Where Self fails it is prefix alone.
func NamePrefix(prefix string) string {
	me, err := Self()
	if err != nil {
		return prefix
	}
	return prefix + me.String() + "-"
}

// WriterOf returns the writer named in name, a name that starts with
// NamePrefix(prefix); false if name does not start so (a name made by an
// older server, or where Self failed).
func WriterOf(name, prefix string) (ID, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return ID{}, false
	}
	idText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return ID{}, false
	}
	id, err := Parse(idText)
	if err != nil {
		return ID{}, false
	}
	return id, true
}

// DeadWriter reports whether name, made with NamePrefix(prefix), was made
// by a process known to be dead: what is left of it can go at once.
func DeadWriter(name, prefix string) bool {
	id, ok := WriterOf(name, prefix)
	return ok && Dead(id)
}
