// Package requestid carries the id of the HTTP request that caused some
// work (a build, a storage call) through contexts, so that every log line
// of that work names the request, across the packages that do it. The web
// package takes the id from the client's X-Request-Id or makes one; the
// builder and the sources only read it.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// Field is the log field that holds a request id, in every package.
const Field = "request_id"

// MaxLength bounds an id taken from a client.
const MaxLength = 128

type key struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// FromContext returns the request id ctx carries, or "".
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}

// Logger returns log with the request id of ctx as a field, when there is
// one.
func Logger(ctx context.Context, log logrus.FieldLogger) logrus.FieldLogger {
	if id := FromContext(ctx); id != "" {
		return log.WithField(Field, id)
	}
	return log
}

// New makes a fresh id: 64 random bits chosen when the process starts,
// which tell instances apart, and a count of the ids this process made,
// which tells its requests apart (it wraps after 2^32); 24 hex digits in
// all. Unique without a random read per request, which every request
// would pay for.
func New() string {
	var b [24]byte
	copy(b[:16], processPrefix[:])
	n := counter.Add(1)
	const digits = "0123456789abcdef"
	for i := 23; i >= 16; i-- {
		b[i] = digits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

var (
	processPrefix = func() (p [16]byte) {
		var r [8]byte
		rand.Read(r[:]) // never fails (crypto/rand's contract since Go 1.24)
		hex.Encode(p[:], r[:])
		return p
	}()
	counter atomic.Uint32
)

// Valid reports whether a client's id may be kept: 1 to MaxLength bytes of
// letters, digits and ".", "_", "-", ":" — enough for UUIDs and the ids of
// common proxies, and nothing that could forge or break a log line.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == '-' || c == ':':
		default:
			return false
		}
	}
	return true
}
