package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/nixport/nixport/auth"
	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/errcode"
)

// basicChallenge is the WWW-Authenticate of a 401 outside the registry
// API (the build API and pages, the token endpoint), and of the registry's
// when no realm can be named: curl, prewarm and browsers answer it.
const basicChallenge = `Basic realm="nixport"`

// tokenPath is the token endpoint that the registry's Bearer challenge
// names as its realm.
const tokenPath = "/auth/token"

// Verifier checks a user name and password, and issues and checks the
// tokens of the token flow (auth.Htpasswd).
type Verifier interface {
	Verify(user, password string) error
	Token(user string, now time.Time) (string, error)
	VerifyToken(token string, now time.Time) (user string, err error)
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
		p := r.URL.Path
		if isRegistryPath(p) {
			// A refusal here is still the registry's answer.
			w.Header()["Docker-Distribution-Api-Version"] = apiVersionValue
			w.challenge = h.bearerChallenge(r)
		}
		// tokenFlow: the client came with a token, if only an anonymous one.
		tokenFlow := false
		if v := r.Header["Authorization"]; len(v) > 0 && guarded(p) {
			if token, ok := auth.ParseBearer(v[0]); ok {
				tokenFlow = true
				if token != auth.AnonymousToken {
					user, err := h.verifier.VerifyToken(token, time.Now())
					if err != nil {
						h.refuse(w, err.Error())
						return
					}
					w.user = user
				}
			} else if user, err := h.checkBasic(w, v[0]); err != nil {
				return
			} else {
				w.user = user
			}
		}
		if w.user == "" && h.needsCredentials(r, tokenFlow) {
			h.refuse(w, "authentication required: log in to this registry (docker login) first")
			return
		}
		next(w, r)
	}
}

// checkBasic checks the Basic credentials of an Authorization header and
// returns their user: empty for empty credentials (anonymous, as skopeo
// sends them without any). Wrong ones are refused (answered) and the error
// says so.
func (h *handler) checkBasic(w *responseWriter, header string) (string, error) {
	user, password, ok := auth.ParseBasic(header)
	switch {
	case !ok:
		const msg = "Authorization header: only Basic credentials or a token from " + tokenPath + " are accepted here"
		h.refuse(w, msg)
		return "", errors.New(msg)
	case user == "" && password == "":
		return "", nil
	case h.verifier.Verify(user, password) != nil:
		h.refuse(w, auth.ErrBadCredentials.Error())
		return "", auth.ErrBadCredentials
	}
	return user, nil
}

// bearerChallenge is the WWW-Authenticate of a 401 from the registry API:
// Bearer, naming the token endpoint at the address the client used.
// Docker Engine needs it: shown a Basic challenge with no credentials
// stored, it stops with "no basic auth credentials" before asking for any
// image, so anonymous pulls of built images would fail; shown a Bearer
// one, it fetches a token, without credentials or with those of docker
// login, and sends it. Skopeo, podman and crane follow the same flow.
// Basic when the request names no usable host.
func (h *handler) bearerChallenge(r *http.Request) string {
	origin, ok := h.origin(r)
	if !ok {
		return basicChallenge
	}
	return `Bearer realm="` + origin + tokenPath + `",service="nixport"`
}

// tokenResponse is the token endpoint's answer, with the fields clients
// read: token (docker, skopeo, crane), access_token (OAuth 2 clients), and
// how long it is good for.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// serveToken answers GET /auth/token, the token flow's realm: a token of
// the user whose Basic credentials come with the request, or the
// anonymous token without credentials. What a token allows is the
// mode's, as for the credentials it stands for; the scope asked is not
// narrowed, as every repository is readable alike.
func (h *handler) serveToken(w *responseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, errcode.New(errcode.Unsupported, "method %s is not supported: get a token with GET", truncate(r.Method)))
		return
	}
	now := time.Now()
	token := auth.AnonymousToken
	if v := r.Header["Authorization"]; len(v) > 0 {
		user, err := h.checkBasic(w, v[0])
		if err != nil {
			return
		}
		if user != "" {
			if token, err = h.verifier.Token(user, now); err != nil {
				h.refuse(w, err.Error())
				return
			}
			w.user = user
		}
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		Token: token, AccessToken: token,
		ExpiresIn: int(auth.TokenTTL / time.Second), IssuedAt: now.UTC().Format(time.RFC3339),
	})
}

// guarded says whether path is where credentials count: the registry,
// the build API and pages. The docs site, health and metrics take none.
func guarded(path string) bool {
	return isRegistryPath(path) || isAPIPath(path) || isBuildPagePath(path)
}

// needsCredentials says whether r may not be answered anonymously. With
// builds needing them, GET /v2/ challenges a client that brings neither
// credentials nor a token: that is how a client learns the registry takes
// credentials, so that a logged-in docker sends them (as a token) with its
// pulls, while an anonymous one fetches the anonymous token and pulls
// built images with it (tokenFlow). A POST to the build API needs them.
// Whatever the mode, a write to the registry (a push or a delete) needs
// them, and with push namespaces GET /v2/ challenges too, or docker would
// never send them with its pushes.
func (h *handler) needsCredentials(r *http.Request, tokenFlow bool) bool {
	if p := r.URL.Path; isRegistryPath(p) {
		if isWriteMethod(r.Method) {
			return true
		}
		if h.push != nil && !tokenFlow && (p == "/v2" || p == "/v2/") {
			return true
		}
	}
	switch h.authMode {
	case auth.All:
		return guarded(r.URL.Path)
	case auth.Builds:
		p := r.URL.Path
		return ((p == "/v2" || p == "/v2/") && !tokenFlow) || (isAPIPath(p) && r.Method == http.MethodPost)
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

// origin is the scheme and host the client used ("https://host:port"),
// for addresses the server gives out: https when the connection is TLS,
// or when a trusted proxy says so in X-Forwarded-Proto (it terminated
// TLS). ok is false when the Host header does not look like one.
func (h *handler) origin(r *http.Request) (string, bool) {
	host := displayHost(r.Host)
	if host == "HOST" {
		return "", false
	}
	scheme := "http://"
	if r.TLS != nil || (r.Header.Get("X-Forwarded-Proto") == "https" && h.fromTrustedProxy(r)) {
		scheme = "https://"
	}
	return scheme + host, true
}

// fromTrustedProxy says whether r's connection comes from a trusted proxy.
func (h *handler) fromTrustedProxy(r *http.Request) bool {
	peer, _, ok := peerAddr(r)
	return ok && isTrusted(peer, h.trustedProxies)
}

// peerAddr is the address of r's connection, IPv4 unmapped, and its host
// part as written; false when that holds no IP (a request from elsewhere
// than a TCP server).
func peerAddr(r *http.Request) (addr netip.Addr, host string, ok bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), host, err == nil
}

// clientAddr is the address of the client: the connection's peer, or,
// when that peer is a trusted proxy, the last address in X-Forwarded-For
// that is not a trusted proxy (each proxy appends the address it got the
// request from, so addresses to the left of an untrusted one may be
// forged).
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer, host, ok := peerAddr(r)
	if !ok {
		return host
	}
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
