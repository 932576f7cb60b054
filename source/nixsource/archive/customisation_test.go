package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// pkgStore creates packages under dir. Each package maps its output names
// ("p1-out") to the entries of that output; it returns the output paths per
// package, in the order given.
func pkgStore(t *testing.T, dir string, pkgs [][]string, entries map[string][]spec) [][]string {
	t.Helper()
	var all []spec
	var out [][]string
	for _, outs := range pkgs {
		var paths []string
		for _, o := range outs {
			all = append(all, spec{path: o, kind: "d"})
			for _, e := range entries[o] {
				e.path = o + "/" + e.path
				all = append(all, e)
			}
			paths = append(paths, filepath.Join(dir, o))
		}
		out = append(out, paths)
	}
	mkstore(t, dir, all)
	return out
}

func customise(t *testing.T, outputs [][]string, own ...Entry) ([]entry, Result, []*logrus.Entry) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	var buf bytes.Buffer
	r, err := WriteCustomisation(&buf, outputs, own, Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	return readLayer(t, buf.Bytes(), r), r, hook.AllEntries()
}

// render shows entries compactly: "dir/", "link -> target", with store
// prefixes shortened to the output name.
func renderEntries(es []entry) []string {
	var out []string
	for _, e := range es {
		s := e.name
		switch e.typ {
		case tar.TypeSymlink:
			s += " -> " + strings.TrimPrefix(e.link, StoreDir+"/")
		case tar.TypeDir:
			s += fmt.Sprintf(" %o", e.mode)
		case tar.TypeReg:
			s += fmt.Sprintf(" %o %q", e.mode, e.data)
		default:
			s += fmt.Sprintf(" type %c", e.typ)
		}
		if e.owner != "" {
			s += " owner " + e.owner
		}
		out = append(out, s)
	}
	return out
}

func renderLogs(es []*logrus.Entry) []string {
	var out []string
	for _, e := range es {
		s := e.Level.String() + " " + e.Message
		for _, k := range []string{"path", "chosen", "ignored"} {
			if v, ok := e.Data[k]; ok {
				s += fmt.Sprintf(" %s=%v", k, strings.TrimPrefix(fmt.Sprint(v), StoreDir+"/"))
			}
		}
		out = append(out, s)
	}
	return out
}

const conflictMsg = "warning customisation layer: conflicting package entries, the first package's wins"

func TestWriteCustomisation(t *testing.T) {
	// Output names start with their hash stand-in, so "a…" sorts first.
	tests := []struct {
		name    string
		pkgs    [][]string
		entries map[string][]spec
		want    []string
		logs    []string
	}{
		{
			name: "no packages: only /tmp",
			want: []string{"tmp/ 1777"},
		},
		{
			name: "one package: top-level symlinks",
			pkgs: [][]string{{"a-hello"}},
			entries: map[string][]spec{"a-hello": {
				{path: "bin", kind: "d"}, {path: "bin/hello", kind: "f"},
				{path: "share", kind: "d"}, {path: "README", kind: "f"},
			}},
			want: []string{"README -> a-hello/README", "bin -> a-hello/bin", "share -> a-hello/share", "tmp/ 1777"},
		},
		{
			name: "shared directories merge recursively",
			pkgs: [][]string{{"b-git"}, {"a-htop"}},
			entries: map[string][]spec{
				"a-htop": {
					{path: "bin", kind: "d"}, {path: "bin/htop", kind: "f"},
					{path: "share", kind: "d"}, {path: "share/man", kind: "d"}, {path: "share/man/man1", kind: "d"},
					{path: "share/man/man1/htop.1", kind: "f"}, {path: "share/pixmaps", kind: "d"},
				},
				"b-git": {
					{path: "bin", kind: "d"}, {path: "bin/git", kind: "f"},
					{path: "share", kind: "d"}, {path: "share/man", kind: "d"}, {path: "share/man/man1", kind: "d"},
					{path: "share/man/man1/git.1", kind: "f"}, {path: "libexec", kind: "d"},
				},
			},
			want: []string{
				"bin/ 755", "bin/git -> b-git/bin/git", "bin/htop -> a-htop/bin/htop",
				"libexec -> b-git/libexec",
				"share/ 755", "share/man/ 755", "share/man/man1/ 755",
				"share/man/man1/git.1 -> b-git/share/man/man1/git.1",
				"share/man/man1/htop.1 -> a-htop/share/man/man1/htop.1",
				"share/pixmaps -> a-htop/share/pixmaps",
				"tmp/ 1777",
			},
		},
		{
			name: "file conflict: first package in sorted order wins",
			pkgs: [][]string{{"b-busybox"}, {"a-coreutils"}},
			entries: map[string][]spec{
				"a-coreutils": {{path: "bin", kind: "d"}, {path: "bin/ls", kind: "f"}, {path: "bin/cp", kind: "f"}},
				"b-busybox":   {{path: "bin", kind: "d"}, {path: "bin/ls", kind: "f"}, {path: "bin/sh", kind: "f"}},
			},
			want: []string{"bin/ 755", "bin/cp -> a-coreutils/bin/cp", "bin/ls -> a-coreutils/bin/ls", "bin/sh -> b-busybox/bin/sh", "tmp/ 1777"},
			logs: []string{conflictMsg + " path=/bin/ls chosen=a-coreutils/bin/ls ignored=b-busybox/bin/ls"},
		},
		{
			name: "directory against file: first wins",
			pkgs: [][]string{{"a-one"}, {"b-two"}, {"c-three"}},
			entries: map[string][]spec{
				"a-one":   {{path: "etc", kind: "d"}, {path: "etc/one", kind: "f"}},
				"b-two":   {{path: "etc", kind: "f"}},
				"c-three": {{path: "etc", kind: "d"}, {path: "etc/three", kind: "f"}, {path: "lib", kind: "f"}},
			},
			want: []string{"etc/ 755", "etc/one -> a-one/etc/one", "etc/three -> c-three/etc/three", "lib -> c-three/lib", "tmp/ 1777"},
			logs: []string{conflictMsg + " path=/etc chosen=a-one/etc ignored=b-two/etc"},
		},
		{
			name: "file against directory: first wins",
			pkgs: [][]string{{"a-one"}, {"b-two"}},
			entries: map[string][]spec{
				"a-one": {{path: "etc", kind: "f"}},
				"b-two": {{path: "etc", kind: "d"}, {path: "etc/two", kind: "f"}},
			},
			want: []string{"etc -> a-one/etc", "tmp/ 1777"},
			logs: []string{conflictMsg + " path=/etc chosen=a-one/etc ignored=b-two/etc"},
		},
		{
			name: "directory against file, one directory left: a symlink",
			pkgs: [][]string{{"a-one"}, {"b-two"}},
			entries: map[string][]spec{
				"a-one": {{path: "etc", kind: "d"}, {path: "etc/one", kind: "f"}},
				"b-two": {{path: "etc", kind: "l", data: "nowhere"}},
			},
			want: []string{"etc -> a-one/etc", "tmp/ 1777"},
			logs: []string{conflictMsg + " path=/etc chosen=a-one/etc ignored=b-two/etc"},
		},
		{
			name: "equal symlinks are no conflict",
			pkgs: [][]string{{"a-one"}, {"b-two"}},
			entries: map[string][]spec{
				"a-one": {{path: "bin", kind: "d"}, {path: "bin/sh", kind: "l", data: "/nix/store/x-bash/bin/bash"}},
				"b-two": {{path: "bin", kind: "d"}, {path: "bin/sh", kind: "l", data: "/nix/store/x-bash/bin/bash"}},
			},
			want: []string{"bin/ 755", "bin/sh -> a-one/bin/sh", "tmp/ 1777"},
		},
		{
			name: "symlinked directory merges like a directory",
			pkgs: [][]string{{"a-one"}, {"b-two"}},
			entries: map[string][]spec{
				"a-one": {{path: "real", kind: "d"}, {path: "real/x", kind: "f"}, {path: "lib", kind: "l", data: "real"}},
				"b-two": {{path: "lib", kind: "d"}, {path: "lib/y", kind: "f"}},
			},
			want: []string{"lib/ 755", "lib/x -> a-one/lib/x", "lib/y -> b-two/lib/y", "real -> a-one/real", "tmp/ 1777"},
		},
		{
			name: "several outputs of one package",
			pkgs: [][]string{{"b-curl-bin", "a-curl-out"}},
			entries: map[string][]spec{
				"a-curl-out": {{path: "lib", kind: "d"}, {path: "bin", kind: "d"}, {path: "bin/curl-config", kind: "f"}},
				"b-curl-bin": {{path: "bin", kind: "d"}, {path: "bin/curl", kind: "f"}},
			},
			want: []string{"bin/ 755", "bin/curl -> b-curl-bin/bin/curl", "bin/curl-config -> a-curl-out/bin/curl-config", "lib -> a-curl-out/lib", "tmp/ 1777"},
		},
		{
			name: "a package's tmp loses to the layer's",
			pkgs: [][]string{{"a-odd"}},
			entries: map[string][]spec{
				"a-odd": {{path: "tmp", kind: "d"}, {path: "usr", kind: "d"}},
			},
			want: []string{"tmp/ 1777", "usr -> a-odd/usr"},
			logs: []string{conflictMsg + " path=/tmp chosen=the layer's own /tmp ignored=a-odd/tmp"},
		},
		{
			name:    "the same output twice is one",
			pkgs:    [][]string{{"a-one"}},
			entries: map[string][]spec{"a-one": {{path: "bin", kind: "d"}}},
			want:    []string{"bin -> a-one/bin", "tmp/ 1777"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			outputs := pkgStore(t, dir, tt.pkgs, tt.entries)
			if tt.name == "the same output twice is one" {
				outputs = append(outputs, outputs[0])
			}
			got, r, logs := customise(t, outputs)
			if g := renderEntries(got); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("entries:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if g := renderLogs(logs); !reflect.DeepEqual(g, tt.logs) {
				t.Errorf("logs:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(tt.logs, "\n  "))
			}

			// The request order does not matter, nor does the directory.
			rev := slices.Clone(outputs)
			slices.Reverse(rev)
			if _, r2, _ := customise(t, rev); r2 != r {
				t.Error("reversed package order gave another layer")
			}
			other := t.TempDir()
			if _, r3, _ := customise(t, pkgStore(t, other, tt.pkgs, tt.entries)); r3.Digest != r.Digest {
				t.Error("identical packages in another directory gave another layer")
			}
		})
	}
}

func TestWriteCustomisationFileOutput(t *testing.T) {
	dir := t.TempDir()
	mkstore(t, dir, []spec{{path: "a-script.sh", kind: "f"}, {path: "b-pkg", kind: "d"}, {path: "b-pkg/bin", kind: "d"}})
	got, _, logs := customise(t, [][]string{{filepath.Join(dir, "a-script.sh")}, {filepath.Join(dir, "b-pkg")}})
	if g := renderEntries(got); !reflect.DeepEqual(g, []string{"bin -> b-pkg/bin", "tmp/ 1777"}) {
		t.Errorf("entries %q", g)
	}
	if len(logs) != 1 || logs[0].Level != logrus.InfoLevel || logs[0].Data["path"] != filepath.Join(dir, "a-script.sh") {
		t.Errorf("logs %q", renderLogs(logs))
	}
}

func TestWriteCustomisationErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		outputs [][]string
		want    string
	}{
		{[][]string{{filepath.Join(dir, "missing")}}, "no such file"},
		{[][]string{{""}}, "not a store path"},
		{[][]string{{"/"}}, "not a store path"},
	} {
		_, err := WriteCustomisation(&bytes.Buffer{}, tc.outputs, nil, Options{}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.outputs, err, tc.want)
		}
	}
}

func TestWriteCustomisationSymlinkLoop(t *testing.T) {
	// Two packages whose "loop" points at its own directory: merging stops
	// (at maxMergeDepth, or earlier when the host gives up resolving the
	// symlinks) and links the first package's entry.
	dir := t.TempDir()
	outputs := pkgStore(t, dir, [][]string{{"a-one"}, {"b-two"}}, map[string][]spec{
		"a-one": {{path: "d", kind: "d"}, {path: "d/loop", kind: "l", data: "."}},
		"b-two": {{path: "d", kind: "d"}, {path: "d/loop", kind: "l", data: "."}},
	})
	got, _, _ := customise(t, outputs)
	if len(got) < 5 || len(got) > maxMergeDepth+5 {
		t.Fatalf("%d entries", len(got))
	}
}

// TestWriteCustomisationOwnEntries: the layer's own files and directories
// (the nonroot meta-package's) take their place among the packages':
// an own directory merges with the packages' directories there, an own
// file wins over a package's (a conflict, logged), parents are made, and
// owners are kept.
func TestWriteCustomisationOwnEntries(t *testing.T) {
	dir := t.TempDir()
	outputs := pkgStore(t, dir, [][]string{{"a-cacert"}, {"b-shadow"}, {"c-tool"}}, map[string][]spec{
		"a-cacert": {{path: "etc", kind: "d"}, {path: "etc/ssl", kind: "d"}},
		"b-shadow": {{path: "etc", kind: "d"}, {path: "etc/passwd", kind: "f"}},
		"c-tool":   {{path: "bin", kind: "d"}, {path: "home", kind: "f"}},
	})
	own := []Entry{
		{Path: "/etc/passwd", Mode: 0o644, Content: []byte("root:x:0:0::/root:/sbin/nologin\n")},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: 65532, GID: 65532},
	}
	got, _, logs := customise(t, outputs, own...)
	want := []string{
		"bin -> c-tool/bin",
		"etc/ 755",
		"etc/passwd 644 \"root:x:0:0::/root:/sbin/nologin\\n\"",
		"etc/ssl -> a-cacert/etc/ssl",
		"home/ 755",
		"home/nonroot/ 700 owner 65532:65532",
		"tmp/ 1777",
	}
	if g := renderEntries(got); !reflect.DeepEqual(g, want) {
		t.Errorf("entries\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
	wantLogs := []string{
		conflictMsg + " path=/etc/passwd chosen=the layer's own /etc/passwd ignored=b-shadow/etc/passwd",
		conflictMsg + " path=/home chosen=the layer's own directory /home ignored=c-tool/home",
	}
	if g := renderLogs(logs); !reflect.DeepEqual(g, wantLogs) {
		t.Errorf("logs\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(wantLogs, "\n"))
	}

	// One package with etc: /etc becomes a real directory, not a link.
	got, _, _ = customise(t, outputs[:1], own[0])
	want = []string{"etc/ 755", "etc/passwd 644 \"root:x:0:0::/root:/sbin/nologin\\n\"", "etc/ssl -> a-cacert/etc/ssl", "tmp/ 1777"}
	if g := renderEntries(got); !reflect.DeepEqual(g, want) {
		t.Errorf("entries %q, want %q", g, want)
	}

	for _, bad := range [][]Entry{
		{{Path: "etc/passwd"}},
		{{Path: "/etc/../passwd"}},
		{{Path: "/"}},
		{{Path: "/a"}, {Path: "/a"}},
		{{Path: "/a"}, {Path: "/a/b"}},
	} {
		if _, err := WriteCustomisation(&bytes.Buffer{}, nil, bad, Options{}, nil); err == nil {
			t.Errorf("own entries %+v accepted", bad)
		}
	}
}
