package config

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8080 || c.StorageBackend != "filesystem" || c.StoragePath != "/var/lib/nixport" {
		t.Errorf("defaults: %+v", c)
	}
	if c.Source.Kind != SourceBuiltin {
		t.Errorf("default source = %v, want builtin", c.Source)
	}
	if c.NixTimeout != 30*time.Minute || c.PullWait != 10*time.Minute || c.LayerBudget != 94 || c.MaxPackages != 64 {
		t.Errorf("defaults: %+v", c)
	}
	if c.MovingTagTTL != 60*time.Second || c.FailedBuildTTL != 60*time.Second {
		t.Errorf("TTL defaults: moving tag %s, failed build %s", c.MovingTagTTL, c.FailedBuildTTL)
	}
	if strings.Join(c.BasePackages, ",") != "cacert,iana-etc" {
		t.Errorf("base packages = %v", c.BasePackages)
	}
	if c.Addr() != ":8080" {
		t.Errorf("addr = %q", c.Addr())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*Config) bool
		wantErr string
	}{
		{name: "nixery env vars", env: map[string]string{"PORT": "9000", "NIXERY_CHANNEL": "nixos-24.05", "NIX_TIMEOUT": "5", "STORAGE_PATH": dir},
			check: func(c *Config) bool {
				return c.Port == 9000 && c.Source == PackageSource{SourceChannel, "nixos-24.05"} && c.NixTimeout == 5*time.Second && c.StoragePath == dir
			}},
		{name: "flag wins over env", args: []string{"-port", "9001"}, env: map[string]string{"PORT": "9000"},
			check: func(c *Config) bool { return c.Port == 9001 }},
		{name: "empty env is unset", env: map[string]string{"PORT": "", "NIXERY_STORAGE_BACKEND": ""},
			check: func(c *Config) bool { return c.Port == 8080 && c.StorageBackend == "filesystem" }},
		{name: "path source", env: map[string]string{"NIXERY_PKGS_PATH": dir},
			check: func(c *Config) bool { return c.Source == PackageSource{SourcePath, dir} }},
		{name: "git source", env: map[string]string{"NIXERY_PKGS_REPO": "https://example.org/pkgs.git"},
			check: func(c *Config) bool { return c.Source.Kind == SourceGit }},
		{name: "listen address", args: []string{"-listen", "127.0.0.1", "-port", "1"},
			check: func(c *Config) bool { return c.Addr() == "127.0.0.1:1" }},
		{name: "base packages list", env: map[string]string{"NIXPORT_BASE_PACKAGES": " cacert , ,tzdata"},
			check: func(c *Config) bool { return strings.Join(c.BasePackages, ",") == "cacert,tzdata" }},
		{name: "failed build ttl", env: map[string]string{"NIXPORT_FAILED_BUILD_TTL": "15"},
			check: func(c *Config) bool { return c.FailedBuildTTL == 15*time.Second }},
		{name: "failed build ttl 0 disables", args: []string{"-failed-build-ttl", "0"}, env: map[string]string{"NIXPORT_FAILED_BUILD_TTL": "15"},
			check: func(c *Config) bool { return c.FailedBuildTTL == 0 }},
		{name: "bad failed build ttl", env: map[string]string{"NIXPORT_FAILED_BUILD_TTL": "-1"}, wantErr: `invalid NIXPORT_FAILED_BUILD_TTL="-1": accepts a whole number of seconds`},
		{name: "failed build ttl in seconds", args: []string{"-failed-build-ttl", "1m"}, wantErr: `invalid -failed-build-ttl="1m"`},
		{name: "bad port", env: map[string]string{"PORT": "http"}, wantErr: `invalid PORT="http": accepts a port number`},
		{name: "bad port flag", args: []string{"-port", "70000"}, wantErr: `invalid -port="70000"`},
		{name: "bad backend", env: map[string]string{"NIXERY_STORAGE_BACKEND": "azure"}, wantErr: "accepts filesystem, gcs or s3"},
		{name: "s3 needs bucket", env: map[string]string{"NIXERY_STORAGE_BACKEND": "s3", "AWS_REGION": "eu-west-1"}, wantErr: "invalid NIXERY_STORAGE_BACKEND=s3: needs S3_BUCKET"},
		{name: "s3 defaults", env: map[string]string{"NIXERY_STORAGE_BACKEND": "s3", "S3_BUCKET": "nixport-layers"},
			check: func(c *Config) bool {
				return c.StorageBackend == "s3" && c.S3Bucket == "nixport-layers" && c.S3UsePresignedURLs && !c.S3ForcePathStyle && c.S3Endpoint == "" && c.AWSRegion == ""
			}},
		{name: "s3 compatible server", env: map[string]string{"NIXERY_STORAGE_BACKEND": "s3", "S3_BUCKET": "layers", "AWS_REGION": "us-east-1",
			"S3_ENDPOINT": "http://127.0.0.1:9000", "S3_FORCE_PATH_STYLE": "true", "S3_USE_PRESIGNED_URLS": "false"},
			check: func(c *Config) bool {
				return c.S3Endpoint == "http://127.0.0.1:9000" && c.S3ForcePathStyle && !c.S3UsePresignedURLs && c.AWSRegion == "us-east-1"
			}},
		{name: "s3 flags", args: []string{"-storage-backend", "s3", "-s3-bucket", "b-from-flag", "-s3-use-presigned-urls=false"},
			check: func(c *Config) bool { return c.S3Bucket == "b-from-flag" && !c.S3UsePresignedURLs }},
		{name: "bad bucket", env: map[string]string{"S3_BUCKET": "a/b"}, wantErr: `invalid S3_BUCKET="a/b": accepts a bucket name`},
		{name: "bad endpoint", env: map[string]string{"S3_ENDPOINT": "minio:9000"}, wantErr: `invalid S3_ENDPOINT="minio:9000": accepts an http(s) URL`},
		{name: "bad presign", env: map[string]string{"S3_USE_PRESIGNED_URLS": "yes"}, wantErr: `invalid S3_USE_PRESIGNED_URLS="yes": accepts true or false`},
		{name: "bad path style", env: map[string]string{"S3_FORCE_PATH_STYLE": "sometimes"}, wantErr: `invalid S3_FORCE_PATH_STYLE="sometimes": accepts true or false`},
		{name: "bad region", env: map[string]string{"AWS_REGION": "eu west"}, wantErr: `invalid AWS_REGION="eu west"`},
		{name: "gcs needs bucket", env: map[string]string{"NIXERY_STORAGE_BACKEND": "gcs"}, wantErr: "needs GCS_BUCKET"},
		{name: "bad timeout", env: map[string]string{"NIX_TIMEOUT": "-3"}, wantErr: "NIX_TIMEOUT"},
		{name: "two sources", env: map[string]string{"NIXERY_CHANNEL": "nixos-unstable", "NIXERY_PKGS_PATH": dir}, wantErr: "set only one"},
		{name: "missing path", env: map[string]string{"NIXERY_PKGS_PATH": dir + "/nope"}, wantErr: "NIXERY_PKGS_PATH"},
		{name: "bad channel", env: map[string]string{"NIXERY_CHANNEL": "a b"}, wantErr: "NIXERY_CHANNEL"},
		{name: "account without key", env: map[string]string{"GCS_SIGNING_ACCOUNT": "x@y"}, wantErr: "needs GCS_SIGNING_KEY"},
		{name: "bad log level", env: map[string]string{"NIXPORT_LOG_LEVEL": "loud"}, wantErr: "NIXPORT_LOG_LEVEL"},
		{name: "budget range", env: map[string]string{"NIXPORT_LAYER_BUDGET": "500"}, wantErr: "from 1 to 124"},
		{name: "metrics address", args: []string{"-metrics-addr", "127.0.0.1:9090"},
			check: func(c *Config) bool { return c.MetricsAddr == "127.0.0.1:9090" }},
		{name: "metrics on any interface", env: map[string]string{"NIXPORT_METRICS_ADDR": ":0"},
			check: func(c *Config) bool { return c.MetricsAddr == ":0" }},
		{name: "metrics address without port", env: map[string]string{"NIXPORT_METRICS_ADDR": "127.0.0.1"}, wantErr: `invalid NIXPORT_METRICS_ADDR="127.0.0.1": accepts host:port`},
		{name: "metrics address bad port", env: map[string]string{"NIXPORT_METRICS_ADDR": "127.0.0.1:99999"}, wantErr: "port number"},
		{name: "auth on loopback", env: map[string]string{"NIXPORT_AUTH_HTPASSWD": "/etc/nixport/htpasswd", "NIXPORT_AUTH_REQUIRED": "builds", "NIXPORT_LISTEN_ADDR": "127.0.0.1"},
			check: func(c *Config) bool { return c.AuthRequired == "builds" && c.AuthHtpasswd == "/etc/nixport/htpasswd" }},
		{name: "auth insecure behind a proxy", env: map[string]string{"NIXPORT_AUTH_HTPASSWD": "/x", "NIXPORT_AUTH_INSECURE": "true"},
			check: func(c *Config) bool { return c.AuthInsecure && c.AuthRequired == "none" }},
		{name: "auth over plain HTTP refused", env: map[string]string{"NIXPORT_AUTH_HTPASSWD": "/x", "NIXPORT_AUTH_REQUIRED": "all"}, wantErr: "in the clear on :8080"},
		{name: "auth mode needs a file", env: map[string]string{"NIXPORT_AUTH_REQUIRED": "all"}, wantErr: "needs NIXPORT_AUTH_HTPASSWD"},
		{name: "bad auth mode", env: map[string]string{"NIXPORT_AUTH_REQUIRED": "pulls"}, wantErr: "accepts none, builds or all"},
		{name: "bad insecure", env: map[string]string{"NIXPORT_AUTH_INSECURE": "maybe"}, wantErr: "NIXPORT_AUTH_INSECURE"},
		{name: "trusted proxies", env: map[string]string{"NIXPORT_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,::1"},
			check: func(c *Config) bool {
				return len(c.TrustedProxies) == 3 && c.TrustedProxies[1].String() == "192.168.1.7/32" && c.TrustedProxies[2].String() == "::1/128"
			}},
		{name: "bad trusted proxy", env: map[string]string{"NIXPORT_TRUSTED_PROXIES": "10.0.0.0/8,proxy.example"}, wantErr: `"proxy.example" is neither`},
		{name: "build limits", env: map[string]string{"NIXPORT_BUILD_RATE": "20", "NIXPORT_CLIENT_MAX_BUILDS": "2"},
			check: func(c *Config) bool { return c.BuildRate == 20 && c.ClientMaxBuilds == 2 }},
		{name: "bad build rate", env: map[string]string{"NIXPORT_BUILD_RATE": "-1"}, wantErr: "NIXPORT_BUILD_RATE"},
		{name: "nix store max", env: map[string]string{"NIXPORT_NIX_STORE_MAX": "50GiB"},
			check: func(c *Config) bool { return c.NixStoreMax == 50<<30 && c.NixStoreLow == 40<<30 }},
		{name: "nix store max and low", args: []string{"-nix-store-max", "500MB", "-nix-store-low", "100 MB"},
			check: func(c *Config) bool { return c.NixStoreMax == 500e6 && c.NixStoreLow == 100e6 }},
		{name: "nix store low 0", env: map[string]string{"NIXPORT_NIX_STORE_MAX": "1048576", "NIXPORT_NIX_STORE_LOW": "0"},
			check: func(c *Config) bool { return c.NixStoreMax == 1<<20 && c.NixStoreLow == 0 }},
		{name: "no nix store collection by default", check: func(c *Config) bool { return c.NixStoreMax == 0 && c.NixStoreLow == 0 }},
		{name: "bad nix store max", env: map[string]string{"NIXPORT_NIX_STORE_MAX": "50G"}, wantErr: `invalid NIXPORT_NIX_STORE_MAX="50G": accepts a size in bytes, such as 50GiB`},
		{name: "zero nix store max", args: []string{"-nix-store-max", "0"}, wantErr: `invalid -nix-store-max="0": accepts a size`},
		{name: "bad nix store low", env: map[string]string{"NIXPORT_NIX_STORE_MAX": "1GiB", "NIXPORT_NIX_STORE_LOW": "lots"}, wantErr: `invalid NIXPORT_NIX_STORE_LOW="lots"`},
		{name: "nix store low without max", env: map[string]string{"NIXPORT_NIX_STORE_LOW": "1GiB"}, wantErr: "invalid NIXPORT_NIX_STORE_LOW: needs NIXPORT_NIX_STORE_MAX"},
		{name: "nix store low not below max", env: map[string]string{"NIXPORT_NIX_STORE_MAX": "1GiB", "NIXPORT_NIX_STORE_LOW": "1024MiB"},
			wantErr: "invalid NIXPORT_NIX_STORE_LOW=1.00 GiB: must be below NIXPORT_NIX_STORE_MAX=1.00 GiB"},
		{name: "max image bytes", env: map[string]string{"NIXPORT_MAX_IMAGE_BYTES": "20GiB"},
			check: func(c *Config) bool { return c.MaxImageBytes == 20<<30 }},
		{name: "bad max image bytes", env: map[string]string{"NIXPORT_MAX_IMAGE_BYTES": "huge"}, wantErr: `invalid NIXPORT_MAX_IMAGE_BYTES="huge": accepts a size`},
		{name: "push namespaces", env: map[string]string{"NIXPORT_PUSH_NAMESPACES": " local, ci,,local"},
			check: func(c *Config) bool { return strings.Join(c.PushNamespaces, ",") == "local,ci" }},
		{name: "push defaults", check: func(c *Config) bool {
			return c.PushNamespaces == nil && c.MaxUploadBytes == 10<<30 && c.UploadTimeout == 10*time.Minute
		}},
		{name: "push bounds", env: map[string]string{"NIXPORT_MAX_UPLOAD_BYTES": "1048576", "NIXPORT_UPLOAD_TIMEOUT": "30"},
			check: func(c *Config) bool { return c.MaxUploadBytes == 1<<20 && c.UploadTimeout == 30*time.Second }},
		{name: "push namespace with a slash", env: map[string]string{"NIXPORT_PUSH_NAMESPACES": "local/app"}, wantErr: `invalid NIXPORT_PUSH_NAMESPACES="local/app": accepts repository name components`},
		{name: "push namespace upper case", env: map[string]string{"NIXPORT_PUSH_NAMESPACES": "Local"}, wantErr: "NIXPORT_PUSH_NAMESPACES"},
		{name: "max upload with a unit", env: map[string]string{"NIXPORT_MAX_UPLOAD_BYTES": "2GiB"},
			check: func(c *Config) bool { return c.MaxUploadBytes == 2<<30 }},
		{name: "bad max upload", env: map[string]string{"NIXPORT_MAX_UPLOAD_BYTES": "10G"}, wantErr: `invalid NIXPORT_MAX_UPLOAD_BYTES="10G": accepts a size in bytes`},
		{name: "bad upload timeout", env: map[string]string{"NIXPORT_UPLOAD_TIMEOUT": "0"}, wantErr: "NIXPORT_UPLOAD_TIMEOUT"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected argument"},
		{name: "no blob collection by default, two hours of grace", check: func(c *Config) bool { return c.GCInterval == 0 && c.GCGrace == 2*time.Hour }},
		{name: "grace follows a long NIX_TIMEOUT", env: map[string]string{"NIX_TIMEOUT": "7200"},
			check: func(c *Config) bool { return c.GCGrace == 3*time.Hour }},
		{name: "gc interval and grace", env: map[string]string{"NIXPORT_GC_INTERVAL": "24h", "NIXPORT_GC_GRACE": "90m"},
			check: func(c *Config) bool { return c.GCInterval == 24*time.Hour && c.GCGrace == 90*time.Minute }},
		{name: "gc durations in seconds", args: []string{"-gc-interval", "3600", "-gc-grace", "0"},
			check: func(c *Config) bool { return c.GCInterval == time.Hour && c.GCGrace == 0 }},
		{name: "bad gc interval", env: map[string]string{"NIXPORT_GC_INTERVAL": "daily"}, wantErr: `invalid NIXPORT_GC_INTERVAL="daily": accepts a duration such as 24h`},
		{name: "negative gc grace", args: []string{"-gc-grace", "-1h"}, wantErr: `invalid -gc-grace="-1h"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, envOf(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestLoadCommand(t *testing.T) {
	var dryRun *bool
	cmd := Command{Name: "gc", About: "Usage: nixport gc [-dry-run] [flags]\n", Flags: func(fs *flag.FlagSet) {
		dryRun = fs.Bool("dry-run", false, "say what would be deleted")
	}}
	c, err := LoadCommand(cmd, []string{"-dry-run", "-storage-path", "/srv/nixport"}, envOf(map[string]string{"NIXPORT_GC_GRACE": "3h"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !*dryRun || c.StoragePath != "/srv/nixport" || c.GCGrace != 3*time.Hour {
		t.Errorf("dry run %v, config %+v", *dryRun, c)
	}
	var help strings.Builder
	if _, err := LoadCommand(cmd, []string{"-h"}, envOf(nil), &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if !strings.HasPrefix(help.String(), "Usage: nixport gc [-dry-run] [flags]\n") || !strings.Contains(help.String(), "-storage-backend name") {
		t.Errorf("help:\n%s", help.String())
	}
	if _, err := LoadCommand(cmd, []string{"now"}, envOf(nil), io.Discard); err == nil || !strings.Contains(err.Error(), `unexpected argument "now": nixport gc takes flags only`) {
		t.Errorf("stray argument: %v", err)
	}
}
