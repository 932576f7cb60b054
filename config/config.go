// Package config reads nixport's configuration from the environment and the
// command line. It accepts Nixery's environment variables unchanged, so
// nixport is a drop-in replacement, and adds its own NIXPORT_* settings.
// Flags win over the environment; an empty variable counts as unset. Every
// value is validated here, so a wrong one stops start-up with one line that
// names the setting and what it accepts, instead of failing on first use.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/auth"
	"github.com/nixport/nixport/bytesize"
	"github.com/nixport/nixport/reference"
)

// Config is the whole configuration of one nixport instance.
type Config struct {
	ListenAddr string // host part; empty = all interfaces
	Port       int

	Source PackageSource

	StorageBackend    string // "filesystem", "gcs" or "s3"
	StoragePath       string
	GCSBucket         string
	GCSSigningKey     string // path to a PEM private key file
	GCSSigningAccount string

	// The s3 backend's settings (Nixery's names where it has them);
	// credentials come from the standard AWS chain, not from here.
	S3Bucket           string
	AWSRegion          string // empty: the AWS configuration's
	S3UsePresignedURLs bool
	S3Endpoint         string // empty: AWS S3 itself
	S3ForcePathStyle   bool

	// NixTimeout bounds one build (Nixery's NIX_TIMEOUT), however many
	// Nix steps it takes and whether or not anyone waits for it.
	NixTimeout time.Duration
	// PullWait bounds how long a pull waits for its build.
	PullWait      time.Duration
	PopularityURL string
	Substituters  []string

	WebDir string

	// Routes is the routes file (NIXPORT_ROUTES) choosing an image source
	// per repository name; empty: every image from Nix.
	Routes string

	LayerBudget  int
	MaxPackages  int
	BasePackages []string
	MaxBuilds    int

	MovingTagTTL time.Duration
	// FailedBuildTTL is how long a build that failed because of what the
	// client asked for is answered with the same error without building
	// again; zero never remembers a failure.
	FailedBuildTTL time.Duration

	// NixStoreMax is the size (the sum of the NAR sizes of its valid
	// paths) past which the Nix store is collected; 0: never collected.
	// NixStoreLow is the size a collection frees it down to: below
	// NixStoreMax, by default 80% of it.
	NixStoreMax, NixStoreLow int64
	nixStoreLowSet           bool

	LogLevel        logrus.Level
	ShutdownTimeout time.Duration

	// TLSCert and TLSKey name PEM files; set together, the registry
	// serves HTTPS (HTTP/2 and HTTP/1.1).
	TLSCert, TLSKey string
	// BodyTimeout ends a request whose body stalls this long; WriteTimeout
	// bounds each write of an answer.
	BodyTimeout, WriteTimeout time.Duration
	// MaxConnsPerClient bounds the connections one client address holds;
	// 0: no bound.
	MaxConnsPerClient int
	// AuthHtpasswd names an htpasswd file of bcrypt entries; AuthRequired
	// says which requests need credentials from it. AuthInsecure allows
	// credentials over plain HTTP on a listener that is not loopback
	// (behind a proxy that terminates TLS).
	AuthHtpasswd string
	AuthRequired auth.Mode
	AuthInsecure bool
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// BuildRate bounds the builds one client starts per hour,
	// ClientMaxBuilds those it has queued or running; 0: no bound.
	BuildRate       int
	ClientMaxBuilds int
	// MaxImageBytes bounds one image's closure; 0: no bound.
	MaxImageBytes int64
	// GCGrace: a collection of storage's blobs keeps every blob written
	// or refreshed less than this long before it began, referenced or
	// not; it protects builds and pushes in progress, so it must exceed
	// the longest of them. Default: NIX_TIMEOUT and an hour, at least
	// two hours. GCInterval is how often the server collects; 0: never.
	GCGrace    time.Duration
	gcGraceSet bool
	GCInterval time.Duration
	// MetricsAddr, when set, is the only address /metrics is served on
	// (host:port), so metrics need not be public; empty serves them at
	// /metrics beside the registry.
	MetricsAddr string
	// PushNamespaces are the first components of the repository names
	// that take pushes (local/app, ci/...); none: the registry is
	// read-only. MaxUploadBytes bounds one pushed blob; UploadTimeout
	// cancels an upload session idle that long.
	PushNamespaces []string
	MaxUploadBytes int64
	UploadTimeout  time.Duration
}

// Addr is the address to listen on.
func (c *Config) Addr() string {
	return net.JoinHostPort(c.ListenAddr, strconv.Itoa(c.Port))
}

// setting is one configuration value: its environment variable, its flag
// and how to parse it into the Config.
type setting struct {
	env, flag, def string
	kind           string // what the value is, shown by -h: int, seconds, file, ...
	usage          string
	apply          func(c *Config, v string) error
}

func settings() []setting {
	return []setting{
		{"PORT", "port", "8080", "int", "TCP port to listen on (0: any free port, logged)", func(c *Config, v string) error {
			p, err := strconv.Atoi(v)
			if err != nil || p < 0 || p > 65535 {
				return errors.New("accepts a port number 0-65535")
			}
			c.Port = p
			return nil
		}},
		{"NIXPORT_LISTEN_ADDR", "listen", "", "address", "address to bind (empty: all interfaces)", func(c *Config, v string) error {
			if v != "" && net.ParseIP(strings.Trim(v, "[]")) == nil && !validHostname(v) {
				return errors.New("accepts an IP address or host name")
			}
			c.ListenAddr = strings.Trim(v, "[]")
			return nil
		}},
		{"NIXERY_CHANNEL", "channel", "", "name", "nixpkgs channel to build from (e.g. nixos-unstable)", func(c *Config, v string) error {
			return c.setSource(SourceChannel, v)
		}},
		{"NIXERY_PKGS_REPO", "pkgs-repo", "", "url", "git repository of the package set", func(c *Config, v string) error {
			return c.setSource(SourceGit, v)
		}},
		{"NIXERY_PKGS_PATH", "pkgs-path", "", "dir", "local directory of the package set", func(c *Config, v string) error {
			return c.setSource(SourcePath, v)
		}},
		{"NIXERY_STORAGE_BACKEND", "storage-backend", "filesystem", "name", "storage backend: filesystem, gcs or s3", func(c *Config, v string) error {
			if v != "filesystem" && v != "gcs" && v != "s3" {
				return errors.New("accepts filesystem, gcs or s3")
			}
			c.StorageBackend = v
			return nil
		}},
		{"STORAGE_PATH", "storage-path", "/var/lib/nixport", "dir", "root directory of filesystem storage", func(c *Config, v string) error {
			c.StoragePath = v
			return nil
		}},
		{"GCS_BUCKET", "gcs-bucket", "", "name", "GCS bucket (gcs backend)", func(c *Config, v string) error {
			c.GCSBucket = v
			return nil
		}},
		{"GCS_SIGNING_KEY", "gcs-signing-key", "", "file", "PEM or service-account JSON key file for signed blob URLs", func(c *Config, v string) error {
			c.GCSSigningKey = v
			return nil
		}},
		{"GCS_SIGNING_ACCOUNT", "gcs-signing-account", "", "email", "service account e-mail for signed blob URLs", func(c *Config, v string) error {
			c.GCSSigningAccount = v
			return nil
		}},
		{"S3_BUCKET", "s3-bucket", "", "name", "S3 bucket (s3 backend; credentials from the standard AWS chain)", func(c *Config, v string) error {
			if !validBucket(v) {
				return errors.New("accepts a bucket name: 3 to 255 letters, digits, '.', '-' or '_'")
			}
			c.S3Bucket = v
			return nil
		}},
		{"AWS_REGION", "aws-region", "", "name", "region of the S3 bucket (empty: the AWS configuration's)", func(c *Config, v string) error {
			if !validRegion(v) {
				return errors.New("accepts a region name such as eu-west-1")
			}
			c.AWSRegion = v
			return nil
		}},
		{"S3_USE_PRESIGNED_URLS", "s3-use-presigned-urls", "true", "bool", "redirect blob downloads to short-lived presigned S3 URLs (false: nixport streams them)", func(c *Config, v string) error {
			return parseBool(v, &c.S3UsePresignedURLs)
		}},
		{"S3_ENDPOINT", "s3-endpoint", "", "url", "base URL of an S3-compatible server (MinIO, R2, Ceph, ...); empty: AWS S3", func(c *Config, v string) error {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return errors.New("accepts an http(s) URL such as https://minio.example:9000")
			}
			c.S3Endpoint = v
			return nil
		}},
		{"S3_FORCE_PATH_STYLE", "s3-force-path-style", "false", "bool", "address the bucket in the URL path rather than the host name, as most servers other than AWS need", func(c *Config, v string) error {
			return parseBool(v, &c.S3ForcePathStyle)
		}},
		{"NIX_TIMEOUT", "nix-timeout", "1800", "seconds", "seconds one build may take, from its start to its image (whether or not anyone still waits for it); also a command route's default deadline", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return errors.New("accepts a whole number of seconds, at least 1")
			}
			c.NixTimeout = time.Duration(n) * time.Second
			return nil
		}},
		{"NIX_POPULARITY_URL", "popularity-url", "", "file|url", "popularity data for layering (file path or http(s) URL)", func(c *Config, v string) error {
			c.PopularityURL = v
			return nil
		}},
		{"NIXPORT_SUBSTITUTERS", "substituters", "", "urls", "space-separated Nix binary caches (empty: none, offline)", func(c *Config, v string) error {
			c.Substituters = strings.Fields(v)
			return nil
		}},
		{"WEB_DIR", "web-dir", "", "dir", "serve the docs site from this directory instead of the embedded one", func(c *Config, v string) error {
			if v != "" {
				if st, err := os.Stat(v); err != nil || !st.IsDir() {
					return errors.New("accepts an existing directory")
				}
			}
			c.WebDir = v
			return nil
		}},
		{"NIXPORT_ROUTES", "routes", "", "file", "routes file choosing a source (nix, command, layout) per repository name", func(c *Config, v string) error {
			if v != "" {
				if st, err := os.Stat(v); err != nil || st.IsDir() {
					return errors.New("accepts an existing routes file (JSON)")
				}
			}
			c.Routes = v
			return nil
		}},
		{"NIXPORT_LAYER_BUDGET", "layer-budget", "94", "int", "most layers per image, customisation layer excluded", func(c *Config, v string) error {
			return parseIntIn(v, 1, 124, &c.LayerBudget)
		}},
		{"NIXPORT_MAX_PACKAGES", "max-packages", "64", "int", "most packages one image may name", func(c *Config, v string) error {
			return parseIntIn(v, 1, 1024, &c.MaxPackages)
		}},
		{"NIXPORT_BASE_PACKAGES", "base-packages", "cacert,iana-etc", "list", "comma-separated packages every image gets", func(c *Config, v string) error {
			c.BasePackages = nil
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					c.BasePackages = append(c.BasePackages, p)
				}
			}
			return nil
		}},
		{"NIXPORT_MAX_BUILDS", "max-builds", strconv.Itoa(runtime.NumCPU()), "int", "most image builds at once; the rest queue", func(c *Config, v string) error {
			return parseIntIn(v, 1, 1024, &c.MaxBuilds)
		}},
		{"NIXPORT_MOVING_TAG_TTL", "moving-tag-ttl", "60", "seconds", "seconds a moving tag (branch, channel, path) is served from memory before the source is asked again", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errors.New("accepts a whole number of seconds")
			}
			c.MovingTagTTL = time.Duration(n) * time.Second
			return nil
		}},
		{"NIXPORT_PULL_WAIT", "pull-wait", "600", "seconds", "how long a pull waits for its image to build; past it the client is told the build goes on, and where to follow it (0: as long as the build takes)", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errors.New("accepts a whole number of seconds (0: wait as long as the build takes)")
			}
			c.PullWait = time.Duration(n) * time.Second
			return nil
		}},
		{"NIXPORT_FAILED_BUILD_TTL", "failed-build-ttl", "60", "seconds", "a failed build's error is answered again without building for this long (0: build every time)", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errors.New("accepts a whole number of seconds (0: never remember a failure)")
			}
			c.FailedBuildTTL = time.Duration(n) * time.Second
			return nil
		}},
		{"NIXPORT_NIX_STORE_MAX", "nix-store-max", "", "bytes", "collect the Nix store's garbage when it holds more than this (e.g. 50GiB; empty: never)", func(c *Config, v string) error {
			n, err := bytesize.Parse(v)
			if err != nil || n < 1 {
				return errors.New(bytesize.Usage + ", above 0")
			}
			c.NixStoreMax = n
			return nil
		}},
		{"NIXPORT_NIX_STORE_LOW", "nix-store-low", "", "bytes", "a collection of the Nix store frees it down to this (default: 80% of -nix-store-max)", func(c *Config, v string) error {
			n, err := bytesize.Parse(v)
			if err != nil {
				return errors.New(bytesize.Usage)
			}
			c.NixStoreLow, c.nixStoreLowSet = n, true
			return nil
		}},
		{"NIXPORT_LOG_LEVEL", "log-level", "info", "level", "log level: debug, info, warning, error", func(c *Config, v string) error {
			l, err := logrus.ParseLevel(v)
			if err != nil {
				return errors.New("accepts debug, info, warning or error")
			}
			c.LogLevel = l
			return nil
		}},
		{"NIXPORT_TLS_CERT", "tls-cert", "", "file", "PEM certificate (chain) to serve HTTPS with HTTP/2; needs -tls-key; a renewed file is picked up without a restart", func(c *Config, v string) error {
			c.TLSCert = v
			return nil
		}},
		{"NIXPORT_TLS_KEY", "tls-key", "", "file", "PEM private key of -tls-cert", func(c *Config, v string) error {
			c.TLSKey = v
			return nil
		}},
		{"NIXPORT_BODY_TIMEOUT", "body-timeout", "30", "seconds", "a request whose body sends no byte for this long is ended", func(c *Config, v string) error {
			return parseSeconds(v, 1, &c.BodyTimeout)
		}},
		{"NIXPORT_WRITE_TIMEOUT", "write-timeout", "60", "seconds", "each write of an answer must finish within this (a slow but live client still gets any blob)", func(c *Config, v string) error {
			return parseSeconds(v, 1, &c.WriteTimeout)
		}},
		{"NIXPORT_MAX_CONNS_PER_CLIENT", "max-conns-per-client", "256", "int", "connections one client address may hold at once (0: no bound)", func(c *Config, v string) error {
			return parseIntIn(v, 0, 1<<20, &c.MaxConnsPerClient)
		}},
		{"NIXPORT_METRICS_ADDR", "metrics-addr", "", "host:port", "serve Prometheus metrics only on this address (e.g. 127.0.0.1:9090), not at /metrics beside the registry", func(c *Config, v string) error {
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				return errors.New("accepts host:port, such as 127.0.0.1:9090 or :9090")
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				return errors.New("accepts host:port with a port number 0-65535")
			}
			if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
				return errors.New("accepts host:port with an IP address or host name")
			}
			c.MetricsAddr = v
			return nil
		}},
		{"NIXPORT_AUTH_HTPASSWD", "auth-htpasswd", "", "file", "htpasswd file of bcrypt entries (htpasswd -B) whose users may log in; read again when it changes", func(c *Config, v string) error {
			c.AuthHtpasswd = v
			return nil
		}},
		{"NIXPORT_AUTH_REQUIRED", "auth-required", "none", "mode", "what needs credentials: none, builds (anyone pulls what is built; starting a build needs them) or all", func(c *Config, v string) error {
			m, err := auth.ParseMode(v)
			if err != nil {
				return errors.New("accepts none, builds or all")
			}
			c.AuthRequired = m
			return nil
		}},
		{"NIXPORT_AUTH_INSECURE", "auth-insecure", "false", "bool", "accept credentials over plain HTTP on a listener that is not loopback (only behind a proxy that terminates TLS)", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("accepts true or false")
			}
			c.AuthInsecure = b
			return nil
		}},
		{"NIXPORT_TRUSTED_PROXIES", "trusted-proxies", "", "list", "comma-separated addresses or CIDR ranges of proxies whose X-Forwarded-For names the client", func(c *Config, v string) error {
			c.TrustedProxies = nil
			for _, part := range strings.Split(v, ",") {
				part = strings.TrimSpace(part)
				if part == "" {
					continue
				}
				if p, err := netip.ParsePrefix(part); err == nil {
					c.TrustedProxies = append(c.TrustedProxies, p.Masked())
					continue
				}
				a, err := netip.ParseAddr(part)
				if err != nil {
					return fmt.Errorf("accepts IP addresses and CIDR ranges; %q is neither", part)
				}
				a = a.Unmap()
				c.TrustedProxies = append(c.TrustedProxies, netip.PrefixFrom(a, a.BitLen()))
			}
			return nil
		}},
		{"NIXPORT_BUILD_RATE", "build-rate", "0", "int", "builds one client (user, else address) may start per hour, refilled evenly (0: no bound)", func(c *Config, v string) error {
			return parseIntIn(v, 0, 1<<20, &c.BuildRate)
		}},
		{"NIXPORT_CLIENT_MAX_BUILDS", "client-max-builds", "0", "int", "builds one client may have queued or running at once (0: no bound)", func(c *Config, v string) error {
			return parseIntIn(v, 0, 1<<20, &c.ClientMaxBuilds)
		}},
		{"NIXPORT_MAX_IMAGE_BYTES", "max-image-bytes", "", "bytes", "largest closure an image may have (such as 20GiB), checked before anything is archived (unset: no bound)", func(c *Config, v string) error {
			n, err := bytesize.Parse(v)
			if err != nil || n <= 0 {
				return errors.New("accepts a size in bytes, such as 20GiB or 500MB")
			}
			c.MaxImageBytes = n
			return nil
		}},
		{"NIXPORT_PUSH_NAMESPACES", "push-namespaces", "", "list", "comma-separated first components of the repository names that take pushes, e.g. local,ci (empty: read-only); set auth (NIXPORT_AUTH_HTPASSWD) or listen on loopback, else anyone may push", func(c *Config, v string) error {
			c.PushNamespaces = nil
			seen := map[string]bool{}
			for _, ns := range strings.Split(v, ",") {
				ns = strings.TrimSpace(ns)
				if ns == "" || seen[ns] {
					continue
				}
				if err := reference.CheckComponent(ns); err != nil {
					return fmt.Errorf("accepts repository name components such as local or ci; %q: %v", ns, err)
				}
				seen[ns] = true
				c.PushNamespaces = append(c.PushNamespaces, ns)
			}
			return nil
		}},
		{"NIXPORT_MAX_UPLOAD_BYTES", "max-upload-bytes", "10GiB", "bytes", "largest blob one push may upload", func(c *Config, v string) error {
			n, err := bytesize.Parse(v)
			if err != nil || n < 1 {
				return errors.New("accepts a size in bytes, such as 10GiB or 500MB")
			}
			c.MaxUploadBytes = n
			return nil
		}},
		{"NIXPORT_UPLOAD_TIMEOUT", "upload-timeout", "600", "seconds", "an upload session with no request for this long is cancelled and its bytes discarded", func(c *Config, v string) error {
			return parseSeconds(v, 1, &c.UploadTimeout)

		}},
		{"NIXPORT_GC_INTERVAL", "gc-interval", "0", "duration", "collect storage's garbage (blobs no manifest or build record names) this often, such as 24h (0: never; nixport gc collects on demand)", func(c *Config, v string) error {
			return parseDuration(v, &c.GCInterval)
		}},
		{"NIXPORT_GC_GRACE", "gc-grace", "", "duration", "a collection keeps every blob written or reused less than this long before it began, such as 2h; must exceed the longest build (default: NIX_TIMEOUT plus an hour, at least 2h)", func(c *Config, v string) error {
			c.gcGraceSet = true
			return parseDuration(v, &c.GCGrace)
		}},
		{"NIXPORT_SHUTDOWN_TIMEOUT", "shutdown-timeout", "30", "seconds", "seconds to finish in-flight requests on shutdown", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errors.New("accepts a whole number of seconds")
			}
			c.ShutdownTimeout = time.Duration(n) * time.Second
			return nil
		}},
	}
}

// ErrVersion is what Load returns for -version: print the version and
// stop.
var ErrVersion = errors.New("version requested")

// about is the head of -h.
const about = `nixport is a container registry that builds images on demand from Nix
packages: "docker pull HOST/shell/git/htop" gets an image holding exactly
those packages, built on the first pull and served from storage after. It is
a drop-in for Nixery: the same image names and environment variables.

Usage:
  nixport [flags]                serve the registry
  nixport prewarm [flags] FILE   build the images FILE lists on a running
                                 registry, before they are pulled (see
                                 nixport prewarm -h)
  nixport gc [-dry-run] [flags]  delete the blobs of storage no manifest or
                                 build record names (see nixport gc -h)

Every flag has an environment variable; a flag wins over its variable, and
an empty variable counts as unset.

  -h	show this help
  -version
    	print the version and exit
`

// Load builds the configuration from command-line arguments (without the
// program name) and the environment, read through getenv. Errors name the
// setting and what it accepts. -h gives flag.ErrHelp after writing the
// help to usageOut; -version gives ErrVersion.
func Load(args []string, getenv func(string) string, usageOut io.Writer) (*Config, error) {
	return load(Command{}, args, getenv, usageOut)
}

// Command is a command of nixport that takes the server's settings (to
// open the same storage, say) beside flags of its own: nixport gc.
type Command struct {
	// Name is the command's name ("gc").
	Name string
	// About is the head of its -h, before the settings.
	About string
	// Flags defines its own flags on fs.
	Flags func(fs *flag.FlagSet)
}

// LoadCommand is Load for a command: its own flags and help, and every
// setting of the server.
func LoadCommand(cmd Command, args []string, getenv func(string) string, usageOut io.Writer) (*Config, error) {
	return load(cmd, args, getenv, usageOut)
}

func load(cmd Command, args []string, getenv func(string) string, usageOut io.Writer) (*Config, error) {
	name, head := "nixport", about
	if cmd.Name != "" {
		name, head = "nixport "+cmd.Name, cmd.About
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(usageOut)
	all := settings()
	flagValues := make([]*string, len(all))
	for i, s := range all {
		flagValues[i] = fs.String(s.flag, "", s.usage)
	}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { writeUsage(usageOut, head, all) }
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *showVersion {
		return nil, ErrVersion
	}
	if fs.NArg() > 0 {
		if cmd.Name != "" {
			return nil, fmt.Errorf("unexpected argument %q: %s takes flags only", fs.Arg(0), name)
		}
		return nil, fmt.Errorf("unexpected argument %q: nixport takes flags only, or a command first (prewarm, gc)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	c := &Config{Source: PackageSource{Kind: SourceBuiltin}}
	for i, s := range all {
		v, origin := s.def, "default"
		if e := getenv(s.env); e != "" {
			v, origin = e, s.env
		}
		if set[s.flag] {
			v, origin = *flagValues[i], "-"+s.flag
		}
		if origin == "default" && v == "" {
			continue
		}
		if err := s.apply(c, v); err != nil {
			name := s.env
			if origin == "-"+s.flag {
				name = origin
			}
			return nil, fmt.Errorf("invalid %s=%q: %v", name, v, err)
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// writeUsage prints what nixport is and every setting, each flag typed by
// what it takes ("-port int").
func writeUsage(out io.Writer, head string, all []setting) {
	fmt.Fprint(out, head)
	for _, s := range all {
		def := ""
		if s.def != "" {
			def = fmt.Sprintf(", default %s", s.def)
		}
		fmt.Fprintf(out, "  -%s %s\n    \t%s (env %s%s)\n", s.flag, s.kind, s.usage, s.env, def)
	}
}

func (c *Config) setSource(kind SourceKind, v string) error {
	if v == "" {
		return nil
	}
	if c.Source.Kind != SourceBuiltin && c.Source.Kind != kind {
		return fmt.Errorf("conflicts with the %s source already set; set only one of NIXERY_CHANNEL, NIXERY_PKGS_REPO, NIXERY_PKGS_PATH", c.Source.Kind)
	}
	switch kind {
	case SourceChannel:
		if !validChannel(v) {
			return errors.New("accepts a channel name such as nixos-unstable or nixos-24.05")
		}
	case SourcePath:
		st, err := os.Stat(v)
		if err != nil || !st.IsDir() {
			return errors.New("accepts an existing directory holding a default.nix")
		}
	case SourceGit:
		if strings.HasPrefix(v, "-") || strings.ContainsAny(v, " \t\n\"") {
			return errors.New("accepts a git repository URL")
		}
	}
	c.Source = PackageSource{Kind: kind, Value: v}
	return nil
}

func (c *Config) validate() error {
	if c.StorageBackend == "gcs" && c.GCSBucket == "" {
		return errors.New("invalid NIXERY_STORAGE_BACKEND=gcs: needs GCS_BUCKET")
	}
	if c.StorageBackend == "s3" && c.S3Bucket == "" {
		return errors.New("invalid NIXERY_STORAGE_BACKEND=s3: needs S3_BUCKET")
	}
	if c.StorageBackend == "filesystem" && c.StoragePath == "" {
		return errors.New("invalid STORAGE_PATH: the filesystem backend needs a directory")
	}
	// A service-account JSON key names its account; a PEM key needs
	// GCS_SIGNING_ACCOUNT beside it (the GCS backend checks which it is).
	if c.GCSSigningAccount != "" && c.GCSSigningKey == "" {
		return errors.New("invalid GCS_SIGNING_ACCOUNT: needs GCS_SIGNING_KEY")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("invalid NIXPORT_TLS_CERT/NIXPORT_TLS_KEY: set both (certificate and key files) or neither")
	}
	for _, f := range []struct{ name, path string }{{"NIXPORT_TLS_CERT", c.TLSCert}, {"NIXPORT_TLS_KEY", c.TLSKey}} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(f.path); err != nil || st.IsDir() {
			return fmt.Errorf("invalid %s=%q: accepts a readable PEM file", f.name, f.path)
		}
	}
	if c.AuthRequired != auth.None && c.AuthHtpasswd == "" {
		return fmt.Errorf("invalid NIXPORT_AUTH_REQUIRED=%s: needs NIXPORT_AUTH_HTPASSWD, the file of users", c.AuthRequired)
	}
	if c.AuthHtpasswd != "" && c.TLSCert == "" && !c.AuthInsecure && !isLoopback(c.ListenAddr) {
		return fmt.Errorf("invalid NIXPORT_AUTH_HTPASSWD: passwords would cross the network in the clear on %s; serve TLS (NIXPORT_TLS_CERT and NIXPORT_TLS_KEY), listen on loopback (NIXPORT_LISTEN_ADDR=127.0.0.1), or, behind a proxy that terminates TLS, set NIXPORT_AUTH_INSECURE=true", c.Addr())
	}
	if c.nixStoreLowSet && c.NixStoreMax == 0 {
		return errors.New("invalid NIXPORT_NIX_STORE_LOW: needs NIXPORT_NIX_STORE_MAX (the size that starts a collection)")
	}
	if c.nixStoreLowSet && c.NixStoreLow >= c.NixStoreMax {
		return fmt.Errorf("invalid NIXPORT_NIX_STORE_LOW=%s: must be below NIXPORT_NIX_STORE_MAX=%s",
			bytesize.Format(c.NixStoreLow), bytesize.Format(c.NixStoreMax))
	}
	if !c.nixStoreLowSet {
		c.NixStoreLow = c.NixStoreMax / 5 * 4
	}
	if !c.gcGraceSet {
		c.GCGrace = max(DefaultGCGrace, c.NixTimeout+time.Hour)
	}
	if c.GCSSigningKey != "" {
		if _, err := os.Stat(c.GCSSigningKey); err != nil {
			return fmt.Errorf("invalid GCS_SIGNING_KEY=%q: accepts a readable PEM or service-account JSON key file", c.GCSSigningKey)
		}
	}
	return nil
}

// isLoopback says whether a listen address (host part) reaches only this
// machine. Empty means every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// parseBool reads true or false (and 1 or 0).
func parseBool(v string, dst *bool) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("accepts true or false")
	}
	*dst = b
	return nil
}

// validBucket accepts S3 bucket names, old ones included (which may hold
// capitals and underscores, and be up to 255 long); the server has the
// last word.
func validBucket(v string) bool {
	if len(v) < 3 || len(v) > 255 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// validRegion accepts AWS region names and what S3-compatible servers
// call theirs.
func validRegion(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// DefaultGCGrace is the least default of NIXPORT_GC_GRACE.
const DefaultGCGrace = 2 * time.Hour

// parseDuration reads a duration ("24h", "90m", "1h30m") or a whole
// number of seconds, not negative.
func parseDuration(v string, dst *time.Duration) error {
	d, err := time.ParseDuration(v)
	if n, nerr := strconv.Atoi(v); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d < 0 {
		return errors.New("accepts a duration such as 24h, 90m or 1h30m, or a whole number of seconds")
	}
	*dst = d
	return nil
}

// parseSeconds reads a whole number of seconds, at least lo.
func parseSeconds(v string, lo int, dst *time.Duration) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		return fmt.Errorf("accepts a whole number of seconds, at least %d", lo)
	}
	*dst = time.Duration(n) * time.Second
	return nil
}

func parseIntIn(v string, lo, hi int, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return fmt.Errorf("accepts a whole number from %d to %d", lo, hi)
	}
	*dst = n
	return nil
}

func validChannel(v string) bool {
	if v == "" || len(v) > 100 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

func validHostname(v string) bool {
	if len(v) > 253 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
