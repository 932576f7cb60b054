package auth

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseBasic(t *testing.T) {
	for _, tt := range []struct {
		header, user, password string
		ok                     bool
	}{
		{"Basic " + b64("alice:secret"), "alice", "secret", true},
		{"basic " + b64("alice:secret"), "alice", "secret", true},
		{"BASIC   " + b64("alice:se:cret"), "alice", "se:cret", true},
		{"Basic " + b64(":"), "", "", true}, // anonymous, as skopeo sends it
		{"Basic " + b64("alice:"), "alice", "", true},
		{"Basic " + b64("alice"), "", "", false},
		{"Basic !!!", "", "", false},
		{"Basic", "", "", false},
		{"Bearer " + b64("alice:secret"), "", "", false},
		{"Basic " + b64("al\nice:secret"), "", "", false},
		{"Basic " + b64("alice:sec\x00ret"), "", "", false},
		{"Basic " + strings.Repeat("A", maxHeader), "", "", false},
		{"", "", "", false},
	} {
		user, password, ok := ParseBasic(tt.header)
		if ok != tt.ok || user != tt.user || password != tt.password {
			t.Errorf("ParseBasic(%.40q) = %q, %q, %v; want %q, %q, %v", tt.header, user, password, ok, tt.user, tt.password, tt.ok)
		}
	}
}

func FuzzParseBasic(f *testing.F) {
	for _, s := range []string{"Basic " + b64("alice:secret"), "basic Og==", "Basic", "Bearer x", "Basic " + b64("a:b:c")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		user, password, ok := ParseBasic(header)
		if !ok {
			if user != "" || password != "" {
				t.Fatal("credentials from a refused header")
			}
			return
		}
		if strings.Contains(user, ":") {
			t.Fatalf("user %q holds a colon", user)
		}
		// What was parsed is what the header says.
		_, rest, _ := strings.Cut(header, " ")
		raw, err := base64.StdEncoding.DecodeString(strings.TrimLeft(rest, " "))
		if err != nil || string(raw) != user+":"+password {
			t.Fatalf("%q parsed as %q:%q", header, user, password)
		}
	})
}

func hashOf(t testing.TB, password string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParseHtpasswd(t *testing.T) {
	good := hashOf(t, "pw")
	for _, tt := range []struct {
		name, file string
		users      int
		err        string
	}{
		{"one", "alice:" + good + "\n", 1, ""},
		{"comments and blanks", "# users\n\nalice:" + good + "\n  bob:" + good + "  \n", 2, ""},
		{"empty", "", 0, ""},
		{"md5 refused", "alice:$apr1$abc$def\n", 0, "line 1 (user \"alice\"): not a bcrypt hash"},
		{"plain refused", "alice:" + good + "\nbob:password\n", 0, "line 2"},
		{"no colon", "alice\n", 0, "not user:hash"},
		{"no user", ":" + good + "\n", 0, "not user:hash"},
		{"twice", "alice:" + good + "\nalice:" + good + "\n", 0, "appears twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := parseHtpasswd([]byte(tt.file))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(entries) != tt.users {
				t.Fatalf("%d users, %v", len(entries), err)
			}
		})
	}
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.Out = os.Stderr
	l.SetLevel(logrus.PanicLevel)
	return l
}

// TestVerify: right, wrong and unknown credentials each cost exactly one
// bcrypt comparison; right ones are then known without one.
func TestVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(path, []byte("alice:"+hashOf(t, "secret")+"\nbob:"+hashOf(t, "hunter2")+"\n"), 0o600)
	h, err := OpenHtpasswd(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	compares := 0
	orig := compareHash
	compareHash = func(hash, pw []byte) error { compares++; return orig(hash, pw) }
	t.Cleanup(func() { compareHash = orig })

	for _, tt := range []struct {
		user, password string
		ok             bool
		compares       int
	}{
		{"alice", "wrong", false, 1},
		{"carol", "secret", false, 1}, // unknown user: the dummy hash
		{"", "", false, 1},
		{"alice", "secret", true, 1},
		{"alice", "secret", true, 0}, // known good now
		{"bob", "secret", false, 1},  // alice's password is not bob's
		{"ALICE", "secret", false, 1},
		{"bob", "hunter2", true, 1},
	} {
		compares = 0
		err := h.Verify(tt.user, tt.password)
		if (err == nil) != tt.ok || compares != tt.compares {
			t.Errorf("Verify(%q, %q) = %v with %d comparisons; want ok %v with %d", tt.user, tt.password, err, compares, tt.ok, tt.compares)
		}
	}
}

// TestReload: a changed file is read again (users added and removed,
// known-good credentials forgotten); a broken one keeps the last users.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	os.WriteFile(path, []byte("alice:"+hashOf(t, "secret")+"\n"), 0o600)
	h, err := OpenHtpasswd(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Verify("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	// Replace the file by renaming a new one over it, as tools do.
	replace := func(content string) {
		tmp := filepath.Join(dir, "new")
		os.WriteFile(tmp, []byte(content), 0o600)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		h.checked = time.Time{} // look again now, not in a second
		h.mu.Unlock()
	}
	replace("bob:" + hashOf(t, "pw") + "\n")
	if err := h.Verify("alice", "secret"); err == nil {
		t.Error("a removed user still verifies")
	}
	if err := h.Verify("bob", "pw"); err != nil {
		t.Errorf("an added user does not verify: %v", err)
	}
	replace("bob:not-a-hash\n")
	if err := h.Verify("bob", "pw"); err != nil {
		t.Errorf("a broken file dropped the users last read: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := OpenHtpasswd(filepath.Join(t.TempDir(), "missing"), quietLog()); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(path, []byte("alice:{SHA}abc\n"), 0o600)
	if _, err := OpenHtpasswd(path, quietLog()); err == nil || !strings.Contains(err.Error(), "htpasswd -B") {
		t.Errorf("SHA entry: %v", err)
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"none", "builds", "all"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("pulls"); err == nil {
		t.Error("ParseMode accepted pulls")
	}
}

// BenchmarkVerify shows what a fresh verification costs: the same for a
// right password, a wrong one and an unknown user (bcrypt at its default
// cost).
//
//	go test ./auth -run '^$' -bench Verify
func BenchmarkVerify(b *testing.B) {
	path := filepath.Join(b.TempDir(), "htpasswd")
	h0, _ := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.DefaultCost)
	os.WriteFile(path, []byte("alice:"+string(h0)+"\n"), 0o600)
	h, err := OpenHtpasswd(path, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, user, password string }{
		{"right", "alice", "secret"}, {"wrong", "alice", "nope"}, {"unknown", "mallory", "secret"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				h.verified.Purge()
				h.Verify(c.user, c.password)
			}
		})
	}
}
