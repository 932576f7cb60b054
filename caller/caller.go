// Package caller says who asked for some work: the authenticated user, or
// else the client's address. web finds it at the edge (credentials, the
// connection, X-Forwarded-For from trusted proxies only) and puts it in
// the request's context; the builder reads it to apply the per-client
// limits on builds and to refuse anonymous builds when they need
// credentials, and build log lines name it. A package of its own so that
// web and the builder share the one type without importing each other.
package caller

import "context"

// Caller is who asked.
type Caller struct {
	// User is the authenticated user; empty for an anonymous client.
	User string
	// Addr is the client's address (an IP), as far as it can be trusted.
	Addr string
	// MayBuild says whether the caller may start builds: false for an
	// anonymous client when builds need credentials.
	MayBuild bool
}

// Key names the caller for per-client limits: the user when there is
// one, so a user's limits follow them across addresses, else the address.
func (c Caller) Key() string {
	if c.User != "" {
		return "user:" + c.User
	}
	return "addr:" + c.Addr
}

type key struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, key{}, c)
}

// FromContext returns the caller ctx carries. Work with no caller comes
// from inside the server (a test, a start-up task) and is not limited.
func FromContext(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(key{}).(Caller)
	return c, ok
}
