package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/storage/filesystem"
)

func TestParseBearer(t *testing.T) {
	for _, tt := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  nxt1.YWxpY2U.123.x-_", "nxt1.YWxpY2U.123.x-_", true},
		{"Bearer " + AnonymousToken, AnonymousToken, true},
		{"Bearer abc==", "abc==", true},
		{"Bearer ==", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer a b", "", false},
		{"Bearer a\"b", "", false},
		{"Basic " + b64("alice:secret"), "", false},
		{"Bearer " + strings.Repeat("a", maxHeader), "", false},
		{"", "", false},
	} {
		token, ok := ParseBearer(tt.header)
		if ok != tt.ok || token != tt.token {
			t.Errorf("ParseBearer(%.40q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer anonymous", "Bearer", "Basic Og==", "Bearer a=b", "Bearer nxt1.YQ.1.AA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := ParseBearer(header)
		if !ok {
			if token != "" {
				t.Fatal("a token from a refused header")
			}
			return
		}
		if token == "" || strings.ContainsAny(token, " \t\r\n\"\\,") || !strings.HasSuffix(header, token) {
			t.Fatalf("%q parsed as token %q", header, token)
		}
	})
}

// FuzzParseToken: whatever a client sends as a token, parsing it never
// panics, and what parses is a signed token's parts.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"nxt1.YWxpY2U.1700000000." + strings.Repeat("A", 43), "nxt1...", "anonymous", "nxt1.YQ.-1.AA", "nxt1.YQ.1.AA.AA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		user, expiry, mac, ok := parseToken(token)
		if ok && (user == "" || expiry <= 0 || len(mac) != 32 || !strings.HasPrefix(token, tokenPrefix)) {
			t.Fatalf("%q parsed as %q, %d, %x", token, user, expiry, mac)
		}
	})
}

func openUsers(t *testing.T, content string) (*Htpasswd, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := OpenHtpasswd(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return h, path
}

// TestTokens: a token names its user until it expires; a forged,
// altered or foreign one is refused; a second reader of the same file
// (another instance, a restart) accepts it; a new password or the user's
// removal ends it.
func TestTokens(t *testing.T) {
	aliceEntry := "alice:" + hashOf(t, "secret") + "\n"
	bobEntry := "bob:" + hashOf(t, "hunter2") + "\n"
	h, path := openUsers(t, aliceEntry+bobEntry)
	now := time.Unix(1_800_000_000, 0)
	token, err := h.Token("alice", now)
	if err != nil {
		t.Fatal(err)
	}
	bobs, _ := h.Token("bob", now)
	if _, err := h.Token("carol", now); err == nil {
		t.Error("a token for an unknown user")
	}
	user, expiry, mac, _ := parseToken(token)
	forge := func(user string, expiry int64, mac []byte) string {
		return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(user)) + "." +
			strconv.FormatInt(expiry, 10) + "." + base64.RawURLEncoding.EncodeToString(mac)
	}
	_, _, bobMAC, _ := parseToken(bobs)
	for _, tt := range []struct {
		name, token string
		at          time.Time
		user        string
		err         error
	}{
		{"fresh", token, now, "alice", nil},
		{"just before expiry", token, now.Add(TokenTTL - time.Second), "alice", nil},
		{"expired", token, now.Add(TokenTTL), "", ErrTokenExpired},
		{"bob's", bobs, now, "bob", nil},
		{"alice's name with bob's signature", forge(user, expiry, bobMAC), now, "", ErrBadToken},
		{"bob's with a later expiry", forge("bob", expiry+3600, bobMAC), now, "", ErrBadToken},
		{"unknown user", forge("carol", expiry, mac), now, "", ErrBadToken},
		{"anonymous", AnonymousToken, now, "", ErrBadToken},
		{"garbage", "nxt1.x.y.z", now, "", ErrBadToken},
	} {
		got, err := h.VerifyToken(tt.token, tt.at)
		if got != tt.user || !errors.Is(err, tt.err) {
			t.Errorf("%s: VerifyToken = %q, %v; want %q, %v", tt.name, got, err, tt.user, tt.err)
		}
	}

	// Another instance reading the same file accepts the token once it
	// shares the token secret, and only then: the file alone forges none.
	other, _ := openUsers(t, aliceEntry)
	if got, err := other.VerifyToken(token, now); err == nil {
		t.Errorf("an instance with another secret accepted the token: %q", got)
	}
	other.SetTokenSecret(h.tokenSecret())
	if got, err := other.VerifyToken(token, now); got != "alice" || err != nil {
		t.Errorf("another instance with the same secret and entry: %q, %v", got, err)
	}
	if err := other.SetTokenSecret([]byte("short")); err == nil {
		t.Error("a short token secret was taken")
	}

	// A new password for alice, bob removed: both tokens end.
	tmp := path + ".new"
	os.WriteFile(tmp, []byte("alice:"+hashOf(t, "secret2")+"\n"), 0o600)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.checked = time.Time{} // look again now, not in a second
	h.mu.Unlock()
	if got, err := h.VerifyToken(token, now); err == nil {
		t.Errorf("alice's token outlived her password: %q", got)
	}
	if got, err := h.VerifyToken(bobs, now); err == nil {
		t.Errorf("bob's token outlived his removal: %q", got)
	}
}

// TestLoadTokenSecret: the first instance on a storage makes the secret,
// the others read the same one.
func TestLoadTokenSecret(t *testing.T) {
	store, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := LoadTokenSecret(ctx, store)
	if err != nil || len(first) != TokenSecretSize {
		t.Fatalf("first: %d bytes, %v", len(first), err)
	}
	again, err := LoadTokenSecret(ctx, store)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("second instance got another secret (%v)", err)
	}
	store.PutObject(ctx, tokenSecretObject, []byte("short"))
	if _, err := LoadTokenSecret(ctx, store); err == nil {
		t.Error("a short stored secret was used")
	}
}
