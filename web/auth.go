package web

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/nixport/nixport/auth"
	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/errcode"
)

// authChallenge is the WWW-Authenticate of every 401: Basic, which is
// what docker login, podman, skopeo and crane answer with stored
// credentials.
const authChallenge = `Basic realm="nixport"`

// Verifier checks a user name and password (auth.Htpasswd).
type Verifier interface {
	Verify(user, password string) error
}

// withAuth finds who is asking and refuses what needs credentials it
// lacks. Credentials are checked whenever they come and a Verifier is
// set: wrong ones are refused on every path that takes them, so a typo
// in docker login shows at once. Which requests need them is the mode's
// (needsCredentials); a build that needs them is refused by the builder,
// which alone knows whether a pull would build.
func (h *handler) withAuth(next handlerFunc) handlerFunc {
	if h.verifier == nil {
		return next
	}
	return func(w *responseWriter, r *http.Request) {
		if v := r.Header["Authorization"]; len(v) > 0 && guarded(r.URL.Path) {
			user, password, ok := auth.ParseBasic(v[0])
			switch {
			case !ok:
				h.refuse(w, "Authorization header: only Basic credentials are accepted here")
				return
			case user == "" && password == "":
				// Anonymous, as skopeo sends it without credentials.
			case h.verifier.Verify(user, password) != nil:
				h.refuse(w, "wrong user name or password")
				return
			default:
				w.user = user
			}
		}
		if w.user == "" && h.needsCredentials(r) {
			h.refuse(w, "authentication required: log in to this registry (docker login) first")
			return
		}
		next(w, r)
	}
}

// guarded says whether path is where credentials count: the registry,
// the build API and pages. The docs site, health and metrics take none.
func guarded(path string) bool {
	return isRegistryPath(path) || isAPIPath(path) || isBuildPagePath(path)
}

// needsCredentials says whether r may not be answered anonymously. With
// builds needing them, GET /v2/ asks an anonymous client for them: that
// is how a client learns the registry takes credentials, so that a
// logged-in docker sends them with its pulls (anonymous pulls of built
// images go on without them), and a POST to the build API needs them.
// Whatever the mode, a write to the registry (a push or a delete) needs
// them, and with push namespaces GET /v2/ asks for them too, or docker
// would never send them with its pushes.
func (h *handler) needsCredentials(r *http.Request) bool {
	if isRegistryPath(r.URL.Path) {
		if isWriteMethod(r.Method) {
			return true
		}
		if h.push != nil && (r.URL.Path == "/v2" || r.URL.Path == "/v2/") {
			return true
		}
	}
	switch h.authMode {
	case auth.All:
		return guarded(r.URL.Path)
	case auth.Builds:
		p := r.URL.Path
		return p == "/v2" || p == "/v2/" || (isAPIPath(p) && r.Method == http.MethodPost)
	}
	return false
}

// refuse answers 401 with the challenge, logged (the access line carries
// the code and the cause) and counted.
func (h *handler) refuse(w *responseWriter, msg string) {
	h.metrics.Refused("auth")
	writeError(w, errcode.New(errcode.Unauthorized, "%s", msg))
}

// callerContext returns ctx carrying who asked, for the builder's limits
// and its refusal of anonymous builds.
func (h *handler) callerContext(ctx context.Context, w *responseWriter, r *http.Request) context.Context {
	return caller.NewContext(ctx, caller.Caller{
		User:     w.user,
		Addr:     clientAddr(r, h.trustedProxies),
		MayBuild: w.user != "" || h.authMode == auth.None || h.verifier == nil,
	})
}

// clientAddr is the address of the client: the connection's peer, or,
// when that peer is a trusted proxy, the last address in X-Forwarded-For
// that is not a trusted proxy (each proxy appends the address it got the
// request from, so addresses to the left of an untrusted one may be
// forged).
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := r.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client.String() // garbage: trust nothing beyond it
			}
			client = a.Unmap()
			if !isTrusted(client, trusted) {
				return client.String()
			}
		}
	}
	return client.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var _ Verifier = (*auth.Htpasswd)(nil)
