package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bearer tokens, for the token flow of distribution's "token
// authentication": a registry client that meets a Bearer challenge fetches
// a token from the realm it names, with the user's credentials when it has
// some and without when it has none, and sends the token with its requests.
// Docker Engine needs this flow for anonymous pulls: shown a Basic
// challenge without credentials stored, it stops with "no basic auth
// credentials" before it asks for anything. (Skopeo, podman and crane go
// on either way.)
//
// A user's token is signed with a key derived from the token secret and
// that user's bcrypt entry. The secret is shared by every instance on the
// same storage (LoadTokenSecret), so they accept each other's tokens and
// those of their own earlier runs; the entry makes a token die with the
// user's removal or a new password. Reading the htpasswd file alone is not
// enough to forge one.

// TokenTTL is how long a token is good for. Clients fetch a new one when
// theirs expires (they are told expires_in).
const TokenTTL = 5 * time.Minute

// AnonymousToken is the token of a client without credentials: it proves
// nothing, and stands for the client having followed the token flow.
const AnonymousToken = "anonymous"

// tokenPrefix starts every signed token; a new format takes a new prefix.
const tokenPrefix = "nxt1."

// ErrBadToken is what VerifyToken returns for a token that was not issued
// here, or whose user or password has changed since.
var ErrBadToken = errors.New("token not valid here: log in again")

// ErrTokenExpired is what VerifyToken returns for a token past its time.
var ErrTokenExpired = errors.New("token expired: fetch a new one")

// ParseBearer parses an Authorization header value of the Bearer scheme
// (RFC 6750): the scheme, case-insensitive, then a token68. ok is false
// for any other scheme or a malformed token.
func ParseBearer(header string) (token string, ok bool) {
	if len(header) > maxHeader {
		return "", false
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(rest, " ")
	body := strings.TrimRight(token, "=")
	if body == "" {
		return "", false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
		default:
			return "", false
		}
	}
	return token, true
}

// Token issues a token for user, who has just proven their password,
// good until now+TokenTTL.
func (h *Htpasswd) Token(user string, now time.Time) (string, error) {
	hash, ok := lookup(h.current(now), user)
	if !ok {
		return "", ErrBadCredentials
	}
	expiry := now.Add(TokenTTL).Unix()
	mac := tokenMAC(h.tokenSecret(), hash, user, expiry)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(user)) + "." +
		strconv.FormatInt(expiry, 10) + "." + base64.RawURLEncoding.EncodeToString(mac), nil
}

// VerifyToken returns the user a token was issued to, if it is still good
// at now.
func (h *Htpasswd) VerifyToken(token string, now time.Time) (string, error) {
	user, expiry, mac, ok := parseToken(token)
	if !ok {
		return "", ErrBadToken
	}
	hash, known := lookup(h.current(now), user)
	if !known || !hmac.Equal(mac, tokenMAC(h.tokenSecret(), hash, user, expiry)) {
		return "", ErrBadToken
	}
	if now.Unix() >= expiry {
		return "", ErrTokenExpired
	}
	return user, nil
}

// parseToken splits a signed token into its user, expiry (Unix seconds)
// and MAC.
func parseToken(token string) (user string, expiry int64, mac []byte, ok bool) {
	rest, found := strings.CutPrefix(token, tokenPrefix)
	if !found || len(token) > maxHeader {
		return "", 0, nil, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return "", 0, nil, false
	}
	rawUser, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || len(rawUser) == 0 {
		return "", 0, nil, false
	}
	expiry, err = strconv.ParseInt(parts[1], 10, 64)
	if err != nil || expiry <= 0 {
		return "", 0, nil, false
	}
	mac, err = base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(mac) != sha256.Size {
		return "", 0, nil, false
	}
	return string(rawUser), expiry, mac, true
}

// tokenMAC signs user and expiry with a key derived from the secret and
// the user's bcrypt entry.
func tokenMAC(secret, hash []byte, user string, expiry int64) []byte {
	key := hmac.New(sha256.New, secret)
	key.Write([]byte("nixport registry token key v1\x00"))
	key.Write(hash)
	m := hmac.New(sha256.New, key.Sum(nil))
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(strconv.FormatInt(expiry, 10)))
	return m.Sum(nil)
}

// lookup finds user's hash, comparing every name in constant time.
func lookup(entries []entry, user string) (hash []byte, ok bool) {
	for _, e := range entries {
		if subtle.ConstantTimeCompare([]byte(e.user), []byte(user)) == 1 {
			hash, ok = e.hash, true
		}
	}
	return hash, ok
}

// TokenSecretSize is the size of the token secret.
const TokenSecretSize = 32

// SetTokenSecret sets the secret every token is signed with. Until it is
// set, a random one made at start is used: tokens are then good on this
// process only.
func (h *Htpasswd) SetTokenSecret(secret []byte) error {
	if len(secret) < TokenSecretSize {
		return fmt.Errorf("token secret of %d bytes, want %d", len(secret), TokenSecretSize)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secret = append([]byte(nil), secret...)
	return nil
}

func (h *Htpasswd) tokenSecret() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.secret
}
