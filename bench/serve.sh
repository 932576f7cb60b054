#!/usr/bin/env bash
# Serving benchmark: warm manifest GETs per second and large blob GET
# throughput, nixport beside nginx serving the same bytes as static files,
# in one run on this machine. Both bind 127.0.0.1 on free ports; both are
# stopped on exit.
#   bench/serve.sh [seconds per measurement, default 5] [rounds, default 3]
# Each figure is the median of the rounds, which alternate between the two
# servers; every round's figures are printed to stderr as well.
# Targets (issue 2): manifests >= 0.8x nginx, blobs >= 0.9x nginx.
#
# Two arrangements of the CPUs, each printed:
#   shared  every process on every core: wrk, and the server (nginx with one
#           worker per core, nixport with GOMAXPROCS = cores), compete;
#   pinned  wrk alone on CPU 0, the server alone on CPU 1 (nginx with one
#           worker): each server gets exactly one core, and the load
#           generator's share of the machine does not depend on how lean
#           the server is.
# Both servers log every request to a file (nginx's access log, nixport's
# JSON line). NIXPORT_LOG_LEVEL=warning measures nixport without its line.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
secs=${1:-5}
rounds=${2:-3}
for tool in wrk nginx taskset; do
	command -v $tool >/dev/null || { echo "bench: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
cores=$(nproc)

work=$(mktemp -d)
pids=()
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return; sleep 0.1; done; echo "bench: $1 never answered" >&2; exit 1; }

go build -o "$work/nixport" ./cmd/nixport
# A large blob placed straight into storage (and beside it for nginx).
go run ./bench/seed -storage "$work/store" -static "$work/static" -name bench -blob-mb 256 >"$work/seed.out"
blob=$(sed -n 's/.*blob=\(sha256:[0-9a-f]*\).*/\1/p' "$work/seed.out")
accept='Accept: application/vnd.oci.image.manifest.v1+json'
manifest_path=/v2/shell/hello/manifests/latest
blob_path=/v2/bench/blobs/$blob

# start_servers CPU_PREFIX NGINX_WORKERS: nixport and nginx, under the
# given taskset prefix (empty: all cores). Sets np_port and ng_port.
start_servers() {
	local prefix=$1 workers=$2
	# The registry on the built-in package set; the moving-tag TTL is
	# raised so the run measures the warm path, not a re-resolve every
	# minute.
	np_port=$(free_port)
	STORAGE_PATH="$work/store" NIXPORT_MOVING_TAG_TTL=3600 NIXPORT_LOG_LEVEL=${NIXPORT_LOG_LEVEL:-info} \
		$prefix "$work/nixport" -listen 127.0.0.1 -port "$np_port" 2>>"$work/nixport.log" &
	pids+=($!)

	ng_port=$(free_port)
	mkdir -p "$work/nginx"
	cat >"$work/nginx/nginx.conf" <<CONF
worker_processes $workers;
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
	$prefix nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off; user root;' &
	pids+=($!)
	wait_for "http://127.0.0.1:$np_port/v2/"
	wait_for "http://127.0.0.1:$ng_port/v2/bench/blobs/$blob"

	# The first GET builds the image with Nix (or, the second time, finds
	# it in storage); nginx then serves the same bytes.
	mkdir -p "$work/static/v2/shell/hello/manifests"
	curl -fsS -H "$accept" -o "$work/static$manifest_path" "http://127.0.0.1:$np_port$manifest_path"
	curl -fs -o /dev/null -H "$accept" "http://127.0.0.1:$np_port$manifest_path"
	curl -fs -o /dev/null "http://127.0.0.1:$ng_port$manifest_path"
}

rps() { $wrk_prefix wrk -t1 -c32 -d"${secs}s" -H "$accept" "$1" | awk '/Requests\/sec/ {print $2}'; }
mbps() {
	$wrk_prefix wrk -t1 -c4 -d"${secs}s" "$1" | awk '/Transfer\/sec/ {
		v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2);
		if (u=="GB") n*=1024; else if (u=="KB") n/=1024; print n }'
}

# median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

results=()
# measure LABEL: manifest and blob figures of each server, as the median
# of $rounds rounds that alternate between the two servers, so that drift
# in the machine (page cache, clock, neighbours) falls on both alike.
measure() {
	local label=$1
	local np_rps=() ng_rps=() np_mbps=() ng_mbps=()
	for _ in $(seq "$rounds"); do
		np_rps+=("$(rps "http://127.0.0.1:$np_port$manifest_path")")
		ng_rps+=("$(rps "http://127.0.0.1:$ng_port$manifest_path")")
		np_mbps+=("$(mbps "http://127.0.0.1:$np_port$blob_path")")
		ng_mbps+=("$(mbps "http://127.0.0.1:$ng_port$blob_path")")
	done
	results+=("$(awk -v l="$label" -v a="$(median "${np_rps[@]}")" -v b="$(median "${ng_rps[@]}")" 'BEGIN { printf "%-36s %14.0f %14.0f %8.2f %8s", "warm manifest GET (req/s), " l, a, b, a/b, ">=0.80" }')")
	results+=("$(awk -v l="$label" -v a="$(median "${np_mbps[@]}")" -v b="$(median "${ng_mbps[@]}")" 'BEGIN { printf "%-36s %14.0f %14.0f %8.2f %8s", "256 MB blob GET (MB/s), " l, a, b, a/b, ">=0.90" }')")
	echo "bench: $label rounds: manifests nixport ${np_rps[*]} nginx ${ng_rps[*]}; blobs nixport ${np_mbps[*]} nginx ${ng_mbps[*]}" >&2
}

wrk_prefix=""
start_servers "" "$cores"
measure shared
stop_all

if [ "$cores" -ge 2 ]; then
	wrk_prefix="taskset -c 0"
	start_servers "taskset -c 1" 1
	measure pinned
	stop_all
else
	echo "bench: one core only; the pinned arrangement needs two" >&2
fi

printf '\n%-36s %14s %14s %8s %8s\n' measurement nixport nginx ratio target
printf '%s\n' "${results[@]}"
