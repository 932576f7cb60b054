#!/usr/bin/env bash
# Serving benchmark: warm manifest GETs per second and large blob GET
# throughput, nixport beside nginx serving the same bytes as static files,
# in one run on this machine. Both bind 127.0.0.1 on free ports; both are
# stopped on exit.
#   bench/serve.sh [seconds per measurement, default 10]
# Targets (issue 2): manifests >= 0.8x nginx, blobs >= 0.9x nginx.
# NIXPORT_LOG_LEVEL=warning measures nixport without its request log line
# (nginx keeps its access log either way).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
secs=${1:-10}
for tool in wrk nginx; do
	command -v $tool >/dev/null || { echo "bench: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

go build -o "$work/nixport" ./cmd/nixport
# A large blob placed straight into storage (and beside it for nginx).
go run ./bench/seed -storage "$work/store" -static "$work/static" -name bench -blob-mb 256 >"$work/seed.out"
blob=$(sed -n 's/.*blob=\(sha256:[0-9a-f]*\).*/\1/p' "$work/seed.out")

# The registry on the built-in package set; the moving-tag TTL is raised so
# the run measures the warm path, not a re-resolve every minute.
np_port=$(free_port)
STORAGE_PATH="$work/store" NIXPORT_MOVING_TAG_TTL=3600 NIXPORT_LOG_LEVEL=${NIXPORT_LOG_LEVEL:-info} GOGC=${GOGC:-100} "$work/nixport" -listen 127.0.0.1 -port "$np_port" 2>"$work/nixport.log" &
pids+=($!)

ng_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
	access_log $work/nginx/access.log;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:$ng_port;
		root $work/static;
		location ~ /manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
	}
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off; user root;' &
pids+=($!)

for url in "http://127.0.0.1:$np_port/v2/" "http://127.0.0.1:$ng_port/v2/bench/blobs/$blob"; do
	for _ in $(seq 100); do curl -fs -o /dev/null "$url" && break; sleep 0.1; done
done

accept='Accept: application/vnd.oci.image.manifest.v1+json'
manifest_path=/v2/shell/hello/manifests/latest
blob_path=/v2/bench/blobs/$blob
# The first GET builds the image with Nix; nginx then serves the same bytes.
mkdir -p "$work/static/v2/shell/hello/manifests"
curl -fsS -H "$accept" -o "$work/static$manifest_path" "http://127.0.0.1:$np_port$manifest_path"
curl -fs -o /dev/null -H "$accept" "http://127.0.0.1:$np_port$manifest_path"
curl -fs -o /dev/null "http://127.0.0.1:$ng_port$manifest_path"

rps() { wrk -t1 -c32 -d"${secs}s" -H "$accept" "$1" | awk '/Requests\/sec/ {print $2}'; }
mbps() {
	wrk -t1 -c4 -d"${secs}s" "$1" | awk '/Transfer\/sec/ {
		v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2);
		if (u=="GB") n*=1024; else if (u=="KB") n/=1024; print n }'
}

np_rps=$(rps "http://127.0.0.1:$np_port$manifest_path")
ng_rps=$(rps "http://127.0.0.1:$ng_port$manifest_path")
np_mbps=$(mbps "http://127.0.0.1:$np_port$blob_path")
ng_mbps=$(mbps "http://127.0.0.1:$ng_port$blob_path")

printf '\n%-28s %14s %14s %8s %8s\n' measurement nixport nginx ratio target
awk -v a="$np_rps" -v b="$ng_rps" 'BEGIN { printf "%-28s %14.0f %14.0f %8.2f %8s\n", "warm manifest GET (req/s)", a, b, a/b, ">=0.80" }'
awk -v a="$np_mbps" -v b="$ng_mbps" 'BEGIN { printf "%-28s %14.0f %14.0f %8.2f %8s\n", "256 MB blob GET (MB/s)", a, b, a/b, ">=0.90" }'
