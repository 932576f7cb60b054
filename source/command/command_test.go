package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixport/nixport/builder"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/testkit"
)

// readArgv reads what layoutgen -record wrote.
func readArgv(t *testing.T, path string) []string {
	t.Helper()
	var argv []string
	testkit.ReadJSON(t, path, &argv)
	return argv
}

func TestCommandArgvHoldsOnlyValidatedWholeElements(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	outs := t.TempDir()
	rec := filepath.Join(t.TempDir(), "argv.json")
	src, err := New(Options{
		Route:   "team/",
		Argv:    []string{bin, "-record=" + rec, "-label=//images/{name}:image", "{name}", "{tag}", "{out}"},
		Timeout: 30 * time.Second,
		TempDir: outs,
		Storage: store,
		Log:     testkit.QuietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := source.BuildOnce(ctx, src, "team/app-1", "v1.2_rc-3"); err != nil {
		t.Fatal(err)
	}
	argv := readArgv(t, rec)
	want := []string{bin, "-record=" + rec, "-label=//images/team/app-1:image", "team/app-1", "v1.2_rc-3"}
	if len(argv) != 6 || !slices.Equal(argv[:5], want) || !strings.HasPrefix(argv[5], filepath.Join(outs, "nixport-out-")) {
		t.Fatalf("argv %q, want %q and an output directory", argv, want)
	}
	testkit.WantEmptyDir(t, outs)

	tests := []struct {
		name, tag string
		code      errcode.Code
	}{
		{"a b", "latest", errcode.NameInvalid},
		{"../etc", "latest", errcode.NameInvalid},
		{"-rf", "latest", errcode.NameInvalid},
		{"$(touch x)", "latest", errcode.NameInvalid},
		{"a;b", "latest", errcode.NameInvalid},
		{"Upper", "latest", errcode.NameInvalid},
		{"a//b", "latest", errcode.NameInvalid},
		{"a/", "latest", errcode.NameInvalid},
		{"", "latest", errcode.NameInvalid},
		{"a\nb", "latest", errcode.NameInvalid},
		{strings.Repeat("a", 256), "latest", errcode.NameInvalid},
		{"app", "-x", errcode.TagInvalid},
		{"app", ".hidden", errcode.TagInvalid},
		{"app", "a b", errcode.TagInvalid},
		{"app", "x;rm", errcode.TagInvalid},
		{"app", "$(id)", errcode.TagInvalid},
		{"app", "", errcode.TagInvalid},
		{"app", strings.Repeat("t", 129), errcode.TagInvalid},
	}
	for _, tt := range tests {
		os.Remove(rec)
		if _, err := src.Identify(tt.name, tt.tag); err == nil {
			t.Errorf("Identify(%q, %q) accepted", tt.name, tt.tag)
		} else {
			testkit.WantCode(t, err, tt.code)
		}
		if _, err := source.BuildOnce(ctx, src, tt.name, tt.tag); err == nil {
			t.Errorf("Build(%q, %q) accepted", tt.name, tt.tag)
		} else {
			testkit.WantCode(t, err, tt.code)
		}
		if _, err := os.Stat(rec); err == nil {
			t.Errorf("%q:%q reached the command", tt.name, tt.tag)
		}
	}
	testkit.WantEmptyDir(t, outs)
}

func TestCommandFailureNamesExitStatus(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, storeDir := testkit.NewFSStore(t)
	log, hook := logtest.NewNullLogger()
	outs := t.TempDir()
	src, err := New(Options{
		Route: "broken/", Argv: []string{bin, "-fail=3", "{name}", "{tag}", "{out}"},
		Timeout: 30 * time.Second, TempDir: outs, Storage: store, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	before := testkit.ListTree(t, storeDir)
	_, err = source.BuildOnce(context.Background(), src, "broken/app", "latest")
	e := testkit.WantCode(t, err, errcode.BuildFailed, "the build command for broken/app:latest failed: exit status 3; the last lines of its output:\n")
	// The client is told why, in the command's last lines, and no more.
	if !strings.HasSuffix(e.Message, "\nbuild step 50 of 50\nERROR: //images/broken:image failed to build") ||
		strings.Count(e.Message, "\n") != clientTail.Lines || strings.Contains(e.Message, "build step 36 of") {
		t.Errorf("message %q: want the last %d lines of the output", e.Message, clientTail.Lines)
	}
	var tail string
	for _, entry := range hook.AllEntries() {
		if entry.Message == "build command failed" {
			tail, _ = entry.Data["output_tail"].(string)
			if entry.Data["exit_code"] != 3 || entry.Data["route"] != "broken/" || entry.Data["image"] != "broken/app" {
				t.Errorf("log fields %v", entry.Data)
			}
		}
	}
	if !strings.Contains(tail, "ERROR: //images/broken:image failed to build") || strings.Contains(tail, "build step 30 of") {
		t.Errorf("logged tail %q: want the last %d lines", tail, tailLines)
	}
	if after := testkit.ListTree(t, storeDir); !slices.Equal(before, after) {
		t.Errorf("a failed build changed storage")
	}
	testkit.WantEmptyDir(t, outs)

	// A command that writes a corrupt layout fails as clearly.
	src, err = New(Options{
		Route: "broken/", Argv: []string{bin, "-corrupt=truncated", "{name}", "{tag}", "{out}"},
		Timeout: 30 * time.Second, TempDir: outs, Storage: store, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = source.BuildOnce(context.Background(), src, "broken/app", "latest")
	testkit.WantCode(t, err, errcode.BuildFailed, "invalid OCI image layout: layer 3 of manifest sha256:", "is truncated")
	if after := testkit.ListTree(t, storeDir); !slices.Equal(before, after) {
		t.Errorf("a corrupt layout changed storage")
	}
	testkit.WantEmptyDir(t, outs)
}

// waitPids waits for the pid file a hanging layoutgen writes.
func waitPids(t *testing.T, path string) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(data), "\n") {
			var pids []int
			for _, f := range strings.Fields(string(data)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatal(err)
				}
				pids = append(pids, pid)
			}
			return pids
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the command never started")
	return nil
}

func TestCommandDeadlineKillsProcessGroup(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"SIGTERM ends it", nil},
		{"SIGKILL after the grace", []string{"-ignore-term"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pids")
			outs := t.TempDir()
			argv := append(append([]string{bin, "-hang=" + pidFile}, tt.args...), "{name}", "{tag}", "{out}")
			src, err := New(Options{
				Route: "slow/", Argv: argv, Timeout: 700 * time.Millisecond, KillGrace: 300 * time.Millisecond,
				TempDir: outs, Storage: store, Log: testkit.QuietLog(),
			})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = source.BuildOnce(context.Background(), src, "slow/app", "latest")
			elapsed := time.Since(start)
			testkit.WantCode(t, err, errcode.BuildFailed, "the build command for slow/app:latest took longer than its limit of 700ms and was stopped", "NIX_TIMEOUT")
			if elapsed > 5*time.Second {
				t.Errorf("the build took %s to stop", elapsed)
			}
			testkit.WaitGone(t, waitPids(t, pidFile)...)
			testkit.WantEmptyDir(t, outs)
		})
	}
}

// TestCommandStopsWhenNobodyWaits: the last client leaving cancels the
// build, and the command's whole group goes.
// TestCommandOutlivesItsClientAndDiesWithTheServer: a build command goes
// on when the client that started it leaves (a later pull gets its image),
// and stops, its whole process group with it, when the server closes.
func TestCommandOutlivesItsClientAndDiesWithTheServer(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	pidFile := filepath.Join(t.TempDir(), "pids")
	outs := t.TempDir()
	src, err := New(Options{
		Route: "slow/", Argv: []string{bin, "-hang=" + pidFile, "-ignore-term", "{name}", "{tag}", "{out}"},
		Timeout: time.Minute, KillGrace: 300 * time.Millisecond,
		TempDir: outs, Storage: store, Log: testkit.QuietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := builder.New(builder.Options{Storage: store, Source: src, Log: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.Image(ctx, "slow/app", "latest")
		errc <- err
	}()
	pids := waitPids(t, pidFile)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Image: %v, want the request's cancellation", err)
	}
	// Nobody waits: the command runs on.
	list := b.Builds()
	if len(list) != 1 || list[0].State.Finished() {
		t.Fatalf("after the client left the builds are %+v, want one running", list)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("process %d of the build is gone: %v", pid, err)
		}
	}
	// The server closes: the group gets SIGTERM, ignores it, and is killed
	// after the grace; Close returns once the build has ended.
	b.Close()
	testkit.WaitGone(t, pids...)
	testkit.WantEmptyDir(t, outs)
}

func TestCommandTemplates(t *testing.T) {
	tests := []struct {
		argv    []string
		wantErr string
		want    []string // expanded for name a/b, tag t, out /o
	}{
		{argv: []string{"/bin/x", "{name}", "{tag}", "{out}"}, want: []string{"/bin/x", "a/b", "t", "/o"}},
		{argv: []string{"/bin/x", "//images/{name}:image", "--tag={tag}", "--out={out}/layout"}, want: []string{"/bin/x", "//images/a/b:image", "--tag=t", "--out=/o/layout"}},
		{argv: []string{"/bin/x", "{}", "{ name }", "{NAME}", "${HOME}", "{out}{out}", "{", "}{tag}{"}, want: []string{"/bin/x", "{}", "{ name }", "{NAME}", "${HOME}", "/o/o", "{", "}t{"}},
		{argv: []string{"/bin/x", "${x}", "{out}"}, wantErr: "unknown placeholder {x}"},
		{argv: []string{"/bin/x", "{nmae}", "{out}"}, wantErr: "unknown placeholder {nmae}"},
		{argv: []string{"/bin/x", "{name}"}, wantErr: "no element of argv holds {out}"},
		{argv: []string{"x", "{out}"}, wantErr: "not an absolute path"},
		{argv: []string{"/bin/{name}", "{out}"}, wantErr: "may not hold a placeholder"},
		{argv: []string{}, wantErr: "argv is empty"},
		{argv: []string{"/bin/x", "a\x00b", "{out}"}, wantErr: "NUL"},
	}
	for _, tt := range tests {
		tmpl, err := parseArgv(tt.argv)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.argv, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.argv, err)
			continue
		}
		s := &Source{argv: tmpl}
		if got := s.expandArgv("a/b", "t", "/o"); !slices.Equal(got, tt.want) {
			t.Errorf("%q expands to %q, want %q", tt.argv, got, tt.want)
		}
	}
}

// TestClientTail: what a client is told of a command's output leaves out
// Nix's --add-root warning; procrun's tests check the bounds.
func TestClientTail(t *testing.T) {
	tests := []struct {
		name, output, want string
	}{
		{"empty", "", ""},
		{"blank lines only", "\n  \n\t\n", ""},
		{"Nix's --add-root warning dropped",
			"building\nwarning: you did not specify '--add-root'; the result might be removed by the garbage collector\nfailed\n\n",
			"building\nfailed"},
		{"colours dropped", "\x1b[1mbuilding\x1b[0m\n\x1b[31mfailed\x1b[0m\n", "building\nfailed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clientTail.Of(tt.output)
			if got != tt.want {
				t.Errorf("clientTail = %q, want %q", got, tt.want)
			}
			if w := clientTail.Suffix("its output", tt.output); (w == "") != (got == "") || w != "" && w != "; the last lines of its output:\n"+got {
				t.Errorf("Suffix = %q", w)
			}
		})
	}
}

// TestNewRemovesDeadServersOutputs: the output directories a crashed
// server's commands were writing are removed when a command source starts;
// a live server's, another machine's and an older server's stay.
func TestNewRemovesDeadServersOutputs(t *testing.T) {
	outs := t.TempDir()
	crashed := exec.Command("sleep", "600")
	if err := crashed.Start(); err != nil {
		t.Fatal(err)
	}
	dead, err := procalive.Of(crashed.Process.Pid)
	crashed.Process.Kill()
	crashed.Wait()
	if err != nil {
		t.Fatal(err)
	}
	other := dead
	other.Space = strings.Repeat("0", len(dead.Space))
	deadDir := filepath.Join(outs, outPrefix+dead.String()+"-123")
	// A Bazel output is read-only.
	if err := os.MkdirAll(filepath.Join(deadDir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(deadDir, "blobs", "sha256", "x"), []byte("partial"))
	os.Chmod(filepath.Join(deadDir, "blobs", "sha256"), 0o555)
	live, err := makeOutput(outs)
	if err != nil {
		t.Fatal(err)
	}
	kept := []string{
		filepath.Base(live), // this process's: a live server's
		outPrefix + other.String() + "-123",
		outPrefix + "123456789", // an older server's
		"unrelated-" + dead.String() + "-123",
	}
	for _, name := range kept[1:] {
		if err := os.Mkdir(filepath.Join(outs, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	store, _ := testkit.NewFSStore(t)
	if _, err := New(Options{Argv: []string{"/bin/true", "{out}"}, Timeout: time.Minute, TempDir: outs, Storage: store, Log: testkit.QuietLog()}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(outs)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	slices.Sort(left)
	slices.Sort(kept)
	if !slices.Equal(left, kept) {
		t.Errorf("left %q, want %q", left, kept)
	}
}
