package nix

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/testkit"
)

func TestParseGCReport(t *testing.T) {
	tests := []struct {
		name, stdout string
		want         Collected
		wantErr      string
	}{
		{name: "nix 2.8", stdout: "12 store paths deleted, 3.45 MiB freed\n", want: Collected{Paths: 12, Bytes: 3617587}},
		{name: "nothing", stdout: "0 store paths deleted, 0.00 MiB freed\n", want: Collected{}},
		{name: "paths listed first", stdout: "/nix/store/aaa-x\n/nix/store/bbb-y\n2 store paths deleted, 1024.00 MiB freed\n", want: Collected{Paths: 2, Bytes: 1 << 30}},
		{name: "other unit", stdout: "1 store path deleted, 1.50 GiB freed", want: Collected{Paths: 1, Bytes: 3 << 29}},
		{name: "empty", stdout: "", wantErr: "no report"},
		{name: "other text", stdout: "finding garbage collector roots...\n", wantErr: "no report"},
		{name: "bad unit", stdout: "1 store paths deleted, 1.5 M freed\n", wantErr: "ambiguous"},
		{name: "huge count", stdout: "99999999999999999999999 store paths deleted, 1 MiB freed\n", wantErr: "number of paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGCReport(tt.stdout)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestDecodeStoreUsage(t *testing.T) {
	tests := []struct {
		name, json string
		want       StoreUsage
		wantErr    string
	}{
		{name: "nix 2.8 array", json: `[{"path":"/nix/store/a-x","narSize":100,"references":["/nix/store/b-y"]},{"path":"/nix/store/b-y","narSize":20,"valid":true}]`,
			want: StoreUsage{Bytes: 120, Paths: 2}},
		{name: "invalid path skipped", json: `[{"path":"/nix/store/a-x","valid":false},{"path":"/nix/store/b-y","narSize":7}]`,
			want: StoreUsage{Bytes: 7, Paths: 1}},
		{name: "nix 2.19 object", json: `{"/nix/store/a-x":{"narSize":5,"references":[]},"/nix/store/b-y":null,"/nix/store/c-z":{"narSize":6}}`,
			want: StoreUsage{Bytes: 11, Paths: 2}},
		{name: "empty store", json: "[]\n", want: StoreUsage{}},
		{name: "empty object", json: "{}", want: StoreUsage{}},
		{name: "no size", json: `[{"path":"/nix/store/a-x"}]`, wantErr: "no narSize"},
		{name: "negative size", json: `[{"path":"/nix/store/a-x","narSize":-1}]`, wantErr: "no narSize"},
		{name: "overflow", json: `[{"narSize":4611686018427387904},{"narSize":1}]`, wantErr: "past 4 EiB"},
		{name: "cut", json: `[{"path":"/nix/store/a-x","narSize":1}`, wantErr: "EOF"},
		{name: "trailing", json: `[] []`, wantErr: "more after"},
		{name: "not json", json: `error: oops`, wantErr: "invalid character"},
		{name: "scalar", json: `42`, wantErr: "unexpected 42"},
		{name: "nothing", json: ``, wantErr: "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeStoreUsage(strings.NewReader(tt.json))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzDecodeStoreUsage(f *testing.F) {
	for _, s := range []string{`[{"path":"/nix/store/a-x","narSize":100}]`, `{"/nix/store/a-x":{"narSize":5},"/nix/store/b":null}`, `[]`, `[{"valid":false}]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := decodeStoreUsage(strings.NewReader(s))
		if err == nil && (u.Bytes < 0 || u.Paths < 0) {
			t.Fatalf("%q: %+v", s, u)
		}
	})
}

func FuzzParseGCReport(f *testing.F) {
	for _, s := range []string{"12 store paths deleted, 3.45 MiB freed\n", "/nix/store/a\n1 store path deleted, 0.00 MiB freed", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseGCReport(s)
		if err == nil && (c.Bytes < 0 || c.Paths < 0) {
			t.Fatalf("%q: %+v", s, c)
		}
	})
}

// TestRemoveDeadOwners: a driver that starts removes the directories (and
// so the GC roots) of drivers whose process is dead, and leaves every
// other one alone.
func TestRemoveDeadOwners(t *testing.T) {
	self, err := procalive.Self()
	if err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Wait()
	defer live.Process.Kill()
	liveID, err := procalive.Of(live.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	mk := func(name string) string {
		p := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(p, "gcroots", "1"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/nix/store/00000000000000000000000000000000-x", filepath.Join(p, "gcroots", "1", "r")); err != nil {
			t.Fatal(err)
		}
		return p
	}
	name := func(id procalive.ID) string { return driverDirPrefix + id.String() + "-1" }
	with := func(id procalive.ID, pid int, start uint64) procalive.ID {
		id.PID, id.Start = pid, start
		return id
	}
	dead := []string{
		mk(name(with(self, exited.Process.Pid, 1))),              // exited
		mk(name(with(self, self.PID, self.Start+1))),             // pid reused
		mk(name(with(liveID, live.Process.Pid, liveID.Start+1))), // pid reused
		mk(name(with(self, 1<<23, 5))),                           // beyond any pid_max
	}
	other := self
	other.Space = "0123456789abcdef"
	kept := []string{
		mk(name(liveID)), // alive
		mk(name(self)),   // this process's own
		mk(name(with(other, exited.Process.Pid, 1))), // another pid space's
		mk("nixport-nix-1234567"),                    // an older nixport's
		mk("unrelated-" + strconv.Itoa(exited.Process.Pid)),
	}

	d, _ := newDriver(t, Options{Source: builtin()})
	if filepath.Dir(d.dir) != tmp {
		t.Fatalf("the driver's directory %s is not in TMPDIR %s", d.dir, tmp)
	}
	if id, ok := procalive.WriterOf(filepath.Base(d.dir), driverDirPrefix); !ok || id != self {
		t.Errorf("the driver's directory %s names owner %+v, want %+v", d.dir, id, self)
	}
	for _, p := range dead {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s was not removed (%v)", filepath.Base(p), err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(filepath.Join(p, "gcroots", "1", "r")); err != nil {
			t.Errorf("%s was touched: %v", filepath.Base(p), err)
		}
	}
}

// TestPlanRootsDerivations: the derivations a resolution names are
// rooted from the moment Resolve returns (Nix refuses to delete them)
// until the resolution is released; a plan resolved, then exposed to a
// collection, still builds.
func TestPlanRootsDerivations(t *testing.T) {
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: testkit.FreshPackageSet(t)}})
	ctx := context.Background()
	res, err := d.Resolve(ctx, LatestTag, hostSystem, []string{"hello", "deep"})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	file := res.roots.dir + "/resolution"
	target, err := os.Readlink(file)
	if err != nil {
		t.Fatal(err)
	}
	// The paths of this fresh package set only: the resolution file and
	// the derivations (busybox-static, their shared input, may be held
	// by anyone).
	var ours []string
	for _, p := range requisites(t, target) {
		if p == target || strings.HasSuffix(p, ".drv") {
			ours = append(ours, p)
		}
	}
	if len(ours) < 8 || !slices.Contains(ours, res.Packages[0].DrvPath) || !slices.Contains(ours, res.Packages[1].DrvPath) {
		t.Fatalf("the resolution roots %v", ours)
	}
	for _, p := range ours {
		out, err := exec.Command("nix-store", "--delete", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "still alive") {
			t.Fatalf("nix-store --delete %s: %v %s; want a refusal", p, err, out)
		}
	}
	img, err := d.BuildResolved(ctx, res)
	if err != nil {
		t.Fatalf("building the plan after the collection tried: %v", err)
	}
	if err := img.Release(); err != nil {
		t.Fatal(err)
	}
	// The outputs' roots are gone with the image, the derivations' with
	// the resolution: then Nix deletes them (and the outputs, without
	// which it keeps their derivations: keep-derivations).
	if err := res.Release(); err != nil {
		t.Fatal(err)
	}
	for _, p := range img.Closure.Paths {
		ours = append(ours, p.Path)
	}
	args := append([]string{"--delete"}, ours...)
	if out, err := exec.Command("nix-store", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --delete after Release: %v %s", err, out)
	}
	for _, p := range ours {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still in the store", p)
		}
	}
}

// TestStoreSizeAndCollect: the driver measures the store as Nix does, and
// a collection asked to free little deletes at least that much (and says
// so) without touching a path the test roots.
func TestStoreSizeAndCollect(t *testing.T) {
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: testkit.FreshPackageSet(t)}})
	ctx := context.Background()
	before := d.ProcessCount()
	u, err := d.StoreSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.ProcessCount() != before {
		t.Errorf("measuring the store counted as a build's process")
	}
	img, err := d.Build(ctx, LatestTag, hostSystem, []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	u2, err := d.StoreSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The image's paths are new (a fresh package set): the store grew by
	// at least their size (others' builds may add more meanwhile, and
	// their collections delete).
	if u.Paths == 0 || u2.Bytes <= 0 {
		t.Fatalf("store sizes %+v then %+v", u, u2)
	}
	hello := img.Resolution.Packages[0].Outputs[0].Path
	if _, err := d.CollectGarbage(ctx, 0); err == nil {
		t.Error("a collection of 0 bytes was run")
	}
	c, err := d.CollectGarbage(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store %+v, then %+v; collected %+v", u, u2, c)
	for _, p := range img.Closure.Paths {
		if _, err := os.Lstat(p.Path); err != nil {
			t.Errorf("%s, rooted, was collected: %v", p.Path, err)
		}
	}
	if out, err := exec.Command(hello + "/bin/hello").Output(); err != nil || string(out) != "Hello, world!\n" {
		t.Errorf("hello after the collection: %q %v", out, err)
	}
}

// requisites is the closure of path, from nix-store.
func requisites(t testing.TB, path string) []string {
	t.Helper()
	out, err := exec.Command("nix-store", "--query", "--requisites", path).Output()
	if err != nil {
		t.Fatalf("nix-store --query --requisites %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

// references are path's direct references (itself left out), from
// nix-store.
func references(t testing.TB, path string) []string {
	t.Helper()
	out, err := exec.Command("nix-store", "--query", "--references", path).Output()
	if err != nil {
		t.Fatalf("nix-store --query --references %s: %v", path, err)
	}
	var refs []string
	for _, r := range strings.Fields(string(out)) {
		if r != path {
			refs = append(refs, r)
		}
	}
	slices.Sort(refs)
	return refs
}
