package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
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
// A user's token is signed with a key derived from that user's bcrypt
// entry, so every instance reading the same file accepts the tokens of the
// others and of its own earlier runs, and a token dies with its expiry,
// the user's removal or a new password. The file is thereby a signing key
// as well as a list of hashes: it was never one to show anyone.

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
	mac := tokenMAC(hash, user, expiry)
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
	if !known || !hmac.Equal(mac, tokenMAC(hash, user, expiry)) {
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

// tokenMAC signs user and expiry with a key derived from the user's bcrypt
// entry.
func tokenMAC(hash []byte, user string, expiry int64) []byte {
	key := hmac.New(sha256.New, hash)
	key.Write([]byte("nixport registry token key v1"))
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
