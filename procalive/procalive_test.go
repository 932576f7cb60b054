package procalive

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

func TestParse(t *testing.T) {
	const space = "0123456789abcdef"
	tests := []struct {
		in   string
		want ID
		ok   bool
	}{
		{"42.1234." + space, ID{PID: 42, Start: 1234, Space: space}, true},
		{"1.0." + space, ID{PID: 1, Start: 0, Space: space}, true},
		{"42.1234", ID{}, false},
		{"42.1234." + space + ".x", ID{}, false},
		{"0.1234." + space, ID{}, false},
		{"-3.1234." + space, ID{}, false},
		{"042.1234." + space, ID{}, false},
		{"+42.1234." + space, ID{}, false},
		{"42.-1." + space, ID{}, false},
		{"42.01." + space, ID{}, false},
		{"42.1234.0123456789ABCDEF", ID{}, false},
		{"42.1234.0123456789abcde", ID{}, false},
		{"42.1234.0123456789abcdefa", ID{}, false},
		{"", ID{}, false},
		{"host/42/abc", ID{}, false},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("Parse(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestParseStat(t *testing.T) {
	rest := " 1 1 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 40723 3133440 389"
	tests := []struct {
		name, line string
		want       stat
		ok         bool
	}{
		{"plain", "14638 (cat) R 14634" + rest, stat{'R', 40723}, true},
		{"spaces and parentheses in the name", "7 (a) b) (c) S 1" + rest, stat{'S', 40723}, true},
		{"zombie", "7 (nixport) Z 1" + rest, stat{'Z', 40723}, true},
		{"no name", "7 nixport S 1" + rest, stat{}, false},
		{"cut short", "7 (nixport) S 1 1 1", stat{}, false},
		{"bad start", strings.Replace("7 (x) S 1"+rest, "40723", "4x", 1), stat{}, false},
	}
	for _, tt := range tests {
		got, err := parseStat(tt.line)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: parseStat = %+v, %v; want %+v, ok %v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

// start starts a process that sleeps until the test ends, and returns it
// with its ID.
func start(t *testing.T) (*exec.Cmd, ID) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	id, err := Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, id
}

func mustSelf(t *testing.T) ID {
	t.Helper()
	me, err := Self()
	if err != nil {
		t.Fatalf("Self: %v", err)
	}
	return me
}

func TestDead(t *testing.T) {
	me := mustSelf(t)
	if me.PID != os.Getpid() || !isSpace(me.Space) || me.Start == 0 {
		t.Fatalf("Self() = %+v", me)
	}
	otherSpace := strings.Repeat("0", spaceLen)
	if otherSpace == me.Space {
		otherSpace = strings.Repeat("1", spaceLen)
	}
	_, liveID := start(t)

	zombie, zombieID := start(t)
	zombie.Process.Signal(syscall.SIGKILL)
	// Not waited for: a zombie until reaped. Wait for the kernel to make
	// it one (waitid with WNOWAIT leaves it unreaped).
	var info [128]byte
	if _, _, errno := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(zombieID.PID), uintptr(unsafe.Pointer(&info)), syscall.WEXITED|0x01000000 /* WNOWAIT */, 0, 0); errno != 0 {
		t.Fatalf("waitid: %v", errno)
	}

	reaped, reapedID := start(t)
	reaped.Process.Kill()
	reaped.Wait()

	pid1, err := readStat(1)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		id   ID
		want bool
	}{
		{"this process", me, false},
		{"this pid, another start", ID{PID: me.PID, Start: me.Start + 1, Space: me.Space}, true},
		{"a live child", liveID, false},
		{"a live child's pid, another start (reused)", ID{PID: liveID.PID, Start: liveID.Start + 1, Space: me.Space}, true},
		{"a zombie", zombieID, true},
		{"a reaped child", reapedID, true},
		{"pid 1", ID{PID: 1, Start: pid1.start, Space: me.Space}, false},
		{"another pid space", ID{PID: reapedID.PID, Start: reapedID.Start, Space: otherSpace}, false},
		{"another pid space, this pid", ID{PID: me.PID, Start: me.Start + 1, Space: otherSpace}, false},
		{"the zero ID", ID{}, false},
	}
	for _, tt := range tests {
		if got := Dead(tt.id); got != tt.want {
			t.Errorf("%s: Dead(%v) = %v, want %v", tt.name, tt.id, got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	me := mustSelf(t)
	const prefix = "blob-"
	name := NamePrefix(prefix) + "XYZ"
	if id, ok := WriterOf(name, prefix); !ok || id != me {
		t.Errorf("WriterOf(%q) = %v, %v; want %v", name, id, ok, me)
	}
	if DeadWriter(name, prefix) {
		t.Errorf("DeadWriter(%q): this process is alive", name)
	}
	dead := ID{PID: me.PID, Start: me.Start + 1, Space: me.Space}
	if name := prefix + dead.String() + "-XYZ"; !DeadWriter(name, prefix) {
		t.Errorf("DeadWriter(%q) = false for a dead writer", name)
	}
	for _, name := range []string{
		"blob-ABCDEFGH",                // the old format: a random part only
		"blob-" + me.String(),          // no dash after the writer
		"object-" + me.String() + "-x", // another prefix
		"blob-1.2.3-x",                 // not an ID
		"nixport-out-12345",            // os.MkdirTemp's random digits
	} {
		if id, ok := WriterOf(name, prefix); ok {
			t.Errorf("WriterOf(%q) = %v, want none", name, id)
		}
		if DeadWriter(name, prefix) {
			t.Errorf("DeadWriter(%q) = true", name)
		}
	}
}
