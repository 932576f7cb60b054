#!/usr/bin/env bash
# Serving benchmark: warm manifest GETs per second and large blob GET
# throughput, nixport beside nginx and the distribution registry serving the
# same bytes, in one run on this machine. Every server binds 127.0.0.1 on a
# free port; every process the script starts is stopped on exit, error or
# interrupt.
#   bench/serve.sh [seconds per measurement, default 4] [rounds, default 3]
# Each figure is the median of the rounds; within a round the servers take
# turns (in an order that rotates from round to round), so that drift in the
# machine (page cache, clock, neighbours) falls on all alike. Every round's
# figures are printed to stderr as well. The default run takes about 4.5
# minutes (printed at the start), plus about 2 minutes once to build
# distribution.
#
# Rows, each measured for the same manifest (by tag, Accept: OCI manifest)
# and the same 256 MB blob:
#   nixport http           the registry under test, plain HTTP/1.1;
#   nixport https          the same binary with -tls-cert/-tls-key (a
#                          throwaway ECDSA P-256 certificate for 127.0.0.1);
#                          skipped, with a line saying so, while the binary
#                          has no -tls-cert flag;
#   nginx http             static files, sendfile: the ceiling, and what
#                          every ratio is taken against;
#   nginx https            the same files over TLS with the same certificate,
#                          HTTP/1.1 only (no http2: wrk speaks HTTP/1.1, so
#                          like is compared with like), no kTLS;
#   distribution <version> the reference registry (distribution v3, built
#                          by the script with go install, pinned, cached under
#                          ${XDG_CACHE_HOME:-~/.cache}/nixport-bench, never in
#                          go.mod), filesystem storage, plain HTTP; the image
#                          is copied into it from nixport with skopeo and the
#                          blob pushed with a monolithic upload.
# Targets (issue 2): manifests >= 0.6x nginx http (aim 0.8x) and >= 10x
# distribution; blobs >= 0.9x nginx http.
#
# Two arrangements of the CPUs, each printed:
#   shared  every process on every core: wrk, and the server (nginx with one
#           worker per core, nixport and distribution with GOMAXPROCS =
#           cores), compete;
#   pinned  wrk alone on CPU 0, the servers alone on CPU 1 (nginx with one
#           worker): each server gets exactly one core, and the load
#           generator's share of the machine does not depend on how lean
#           the server is.
# Every server logs every request, one line each, to a file: nginx's access
# log, nixport's JSON line, distribution's access log (Apache combined
# format on stdout; its log level is warn so that its second, logrus line
# per request is not written: DIST_LOG_LEVEL=info restores its default).
# NIXPORT_LOG_LEVEL=warning measures nixport without its line.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
secs=${1:-4}
rounds=${2:-3}
dist_version=v3.1.2
for tool in wrk nginx taskset openssl skopeo curl python3; do
	command -v $tool >/dev/null || { echo "bench: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
cores=$(nproc)

work=$(mktemp -d)
pids=()
# stop_all: SIGTERM to every process started, by PID; SIGKILL to any still
# running after 10 s.
stop_all() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 100); do
		local alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { for _ in $(seq 100); do curl -kfs -r 0-0 -o /dev/null "$1" && return; sleep 0.1; done; echo "bench: $1 never answered" >&2; exit 1; }

go build -o "$work/nixport" ./cmd/nixport

# Which rows run. nixport's TLS flags are checked in its own usage text.
declare -A label skip base
servers=(np nps ng ngs dist)
label[np]="nixport http"
label[nps]="nixport https"
label[ng]="nginx http"
label[ngs]="nginx https (HTTP/1.1)"
label[dist]="distribution $dist_version http"
usage=$("$work/nixport" --help 2>&1 || true)
if ! grep -q -- '-tls-cert' <<<"$usage"; then
	skip[nps]="skipped: nixport has no -tls-cert flag"
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nixport-bench/distribution-$dist_version
dist_bin=$cache/registry

nrows=0
for s in "${servers[@]}"; do [ -n "${skip[$s]:-}" ] || nrows=$((nrows + 1)); done
arrangements=1
[ "$cores" -ge 2 ] && arrangements=2
est=$((arrangements * rounds * nrows * 2 * secs))
extra=""
[ -x "$dist_bin" ] || extra=", plus about 2 min once to build distribution $dist_version into $cache"
echo "bench: expected duration about $((est + 30)) s: $arrangements arrangement(s) x $rounds round(s) x $nrows server(s) x 2 measurements x ${secs} s, plus about 30 s of set-up$extra" >&2

# distribution, built once as a Go tool of its own (never in go.mod: its
# dependencies stay out of the project) and cached.
if [ ! -x "$dist_bin" ]; then
	echo "bench: building distribution $dist_version (go install, cached in $cache)" >&2
	mkdir -p "$cache"
	if ! (cd "$work" && GOFLAGS='' GOBIN=$cache go install "github.com/distribution/distribution/v3/cmd/registry@$dist_version") >"$work/dist-install.log" 2>&1; then
		echo "bench: go install github.com/distribution/distribution/v3/cmd/registry@$dist_version failed:" >&2
		tail -n 20 "$work/dist-install.log" >&2
		skip[dist]="skipped: distribution $dist_version could not be installed (go install failed, see above)"
	fi
fi

# A throwaway self-signed ECDSA P-256 certificate for 127.0.0.1, for every
# TLS row.
mkdir -p "$work/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>"$work/tls/openssl.log"

# A large blob placed straight into storage (and beside it for nginx; the
# same file is uploaded to distribution).
go run ./bench/seed -storage "$work/store" -static "$work/static" -name bench -blob-mb 256 >"$work/seed.out"
blob=$(sed -n 's/.*blob=\(sha256:[0-9a-f]*\).*/\1/p' "$work/seed.out")
blob_file=$work/static/v2/bench/blobs/$blob
accept='Accept: application/vnd.oci.image.manifest.v1+json'
manifest_path=/v2/shell/hello/manifests/latest
blob_path=/v2/bench/blobs/$blob

printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$work/policy.json"
dist_filled=""

# fill_distribution: the image nixport built, copied by skopeo with its
# digests kept, and the 256 MB blob by a monolithic upload (POST, then PUT
# ?digest=); then checks that distribution serves the same bytes.
fill_distribution() {
	local d=${base[dist]} np=${base[np]} loc sep
	skopeo --policy "$work/policy.json" copy -q --preserve-digests \
		--src-tls-verify=false --dest-tls-verify=false \
		"docker://${np#http://}/shell/hello:latest" "docker://${d#http://}/shell/hello:latest"
	loc=$(curl -fsS -X POST -o /dev/null -D - "$d/v2/bench/blobs/uploads/" |
		tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
	case $loc in /*) loc=$d$loc ;; esac
	case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
	curl -fsS -o /dev/null -T "$blob_file" -H 'Content-Type: application/octet-stream' "$loc${sep}digest=$blob"
	curl -fsS -H "$accept" -o "$work/dist-manifest" "$d$manifest_path"
	if ! cmp -s "$work/dist-manifest" "$work/static$manifest_path"; then
		echo "bench: distribution serves a different manifest from nixport's (skopeo rewrote it)" >&2
		exit 1
	fi
	local size
	size=$(curl -fsS -I "$d$blob_path" | tr -d '\r' | awk 'tolower($1) == "content-length:" { print $2 }')
	[ "$size" = $((256 << 20)) ] || { echo "bench: distribution has the blob with $size bytes" >&2; exit 1; }
	dist_filled=1
}

# start_servers CPU_PREFIX NGINX_WORKERS: every server not skipped, under
# the given taskset prefix (empty: all cores). Sets base[...].
start_servers() {
	local prefix=$1 workers=$2 port
	# The registry on the built-in package set; the moving-tag TTL is
	# raised so the run measures the warm path, not a re-resolve every
	# minute.
	port=$(free_port)
	base[np]=http://127.0.0.1:$port
	STORAGE_PATH="$work/store" NIXPORT_MOVING_TAG_TTL=3600 NIXPORT_LOG_LEVEL=${NIXPORT_LOG_LEVEL:-info} \
		$prefix "$work/nixport" -listen 127.0.0.1 -port "$port" 2>>"$work/nixport.log" &
	pids+=($!)
	if [ -z "${skip[nps]:-}" ]; then
		# A second process on the same storage: the image is built once.
		port=$(free_port)
		base[nps]=https://127.0.0.1:$port
		STORAGE_PATH="$work/store" NIXPORT_MOVING_TAG_TTL=3600 NIXPORT_LOG_LEVEL=${NIXPORT_LOG_LEVEL:-info} \
			$prefix "$work/nixport" -listen 127.0.0.1 -port "$port" \
			-tls-cert "$work/tls/cert.pem" -tls-key "$work/tls/key.pem" 2>>"$work/nixport-tls.log" &
		pids+=($!)
	fi

	local ng_port ngs_port
	ng_port=$(free_port)
	ngs_port=$(free_port)
	base[ng]=http://127.0.0.1:$ng_port
	base[ngs]=https://127.0.0.1:$ngs_port
	mkdir -p "$work/nginx"
	# TLS 1.3 with the server's preference in Go's order (AES-128-GCM
	# first, as crypto/tls picks), so both TLS servers use one cipher.
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
	server {
		listen 127.0.0.1:$ngs_port ssl;
		ssl_certificate $work/tls/cert.pem;
		ssl_certificate_key $work/tls/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_prefer_server_ciphers on;
		ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
		root $work/static;
		location ~ /manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
	}
}
CONF
	$prefix nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off; user root;' &
	pids+=($!)

	if [ -z "${skip[dist]:-}" ]; then
		port=$(free_port)
		base[dist]=http://127.0.0.1:$port
		mkdir -p "$work/dist"
		cat >"$work/dist/config.yml" <<CONF
version: 0.1
log:
  level: ${DIST_LOG_LEVEL:-warn}
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $work/dist/storage
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
  delete:
    enabled: false
http:
  addr: 127.0.0.1:$port
  secret: nixport-bench
CONF
		# OTEL_TRACES_EXPORTER=none: by default it sends its traces to
		# localhost:4318.
		OTEL_TRACES_EXPORTER=none $prefix "$dist_bin" serve "$work/dist/config.yml" \
			>>"$work/dist/access.log" 2>>"$work/dist/registry.log" &
		pids+=($!)
	fi

	wait_for "${base[np]}/v2/"
	wait_for "${base[ng]}$blob_path"
	wait_for "${base[ngs]}$blob_path"
	[ -n "${skip[nps]:-}" ] || wait_for "${base[nps]}/v2/"
	[ -n "${skip[dist]:-}" ] || wait_for "${base[dist]}/v2/"

	# The first GET builds the image with Nix (or, the second time, finds
	# it in storage); nginx and distribution then serve the same bytes.
	mkdir -p "$work/static/v2/shell/hello/manifests"
	curl -fsS -H "$accept" -o "$work/static$manifest_path" "${base[np]}$manifest_path"
	[ -n "${skip[dist]:-}" ] || [ -n "$dist_filled" ] || fill_distribution
	for s in "${servers[@]}"; do
		[ -n "${skip[$s]:-}" ] && continue
		curl -kfsS -o /dev/null -H "$accept" "${base[$s]}$manifest_path"
		curl -kfsS -o "$work/check-manifest" -H "$accept" "${base[$s]}$manifest_path"
		cmp -s "$work/check-manifest" "$work/static$manifest_path" ||
			{ echo "bench: ${label[$s]} serves a different manifest" >&2; exit 1; }
	done
}

# tls_line URL: the protocol and cipher an OpenSSL client (as wrk is)
# negotiates, and the HTTP version the server picks for a client that
# offers HTTP/2 (wrk offers only HTTP/1.1).
tls_line() {
	local hp=${1#https://} v
	v=$(curl -k -sS -o /dev/null -w '%{http_version}' --http2 "$1/v2/" || true)
	openssl s_client -brief -connect "$hp" </dev/null 2>&1 |
		awk -F': ' -v v="$v" '/^Protocol version/ { p = $2 } /^Ciphersuite/ { c = $2 }
			END { print p " " c ", HTTP/" v " to a client offering HTTP/2" }'
}

# run_wrk ARGS...: wrk's output, failing on any error response or socket
# error, which would make its figure meaningless. wrk counts a response
# slower than --timeout as a socket error: with a one-core server, four
# connections and 256 MB each, one can take seconds.
run_wrk() {
	local out
	out=$($wrk_prefix wrk --timeout 60s "$@")
	if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
		echo "bench: wrk $*: errors:" >&2
		echo "$out" >&2
		exit 1
	fi
	echo "$out"
}
rps() { run_wrk -t1 -c32 -d"${secs}s" -H "$accept" "$1" | awk '/Requests\/sec/ {print $2}'; }
mbps() {
	run_wrk -t1 -c4 -d"${secs}s" "$1" | awk '/Transfer\/sec/ {
		v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2);
		if (u=="GB") n*=1024; else if (u=="KB") n/=1024; print n }'
}

# median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# row NAME VALUE RATIO TARGET VERDICT: one line of the table.
row() { printf '  %-34s %12s %12s   %-20s %s\n' "$1" "$2" "$3" "$4" "$5" | sed 's/ *$//'; }
# verdict RATIO MIN: met or MISSED.
verdict() { awk -v r="$1" -v m="$2" 'BEGIN { print (r >= m) ? "met" : "MISSED" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

results=()
# table KIND ARRANGEMENT MIN AIM: the lines of one measurement, from the
# medians in med[].
table() {
	local kind=$1 arr=$2 min=$3 aim=$4 s r target
	local unit="req/s"
	[ "$kind" = blob ] && unit="MB/s"
	if [ "$kind" = manifest ]; then
		results+=("warm manifest GET ($unit), $arr")
	else
		results+=("256 MB blob GET ($unit), $arr")
	fi
	target=">=$min"
	[ -n "$aim" ] && target="$target (aim $aim)"
	local ng=${med[$kind:ng]}
	for s in "${servers[@]}"; do
		if [ -n "${skip[$s]:-}" ]; then
			results+=("$(row "${label[$s]}" - - "${skip[$s]}" "")")
			continue
		fi
		r=$(ratio "${med[$kind:$s]}" "$ng")
		case $s in
		np | nps) results+=("$(row "${label[$s]}" "$(printf '%.0f' "${med[$kind:$s]}")" "$r" "$target" "$(verdict "$r" "$min")")") ;;
		*) results+=("$(row "${label[$s]}" "$(printf '%.0f' "${med[$kind:$s]}")" "$r" "" "")") ;;
		esac
	done
	if [ -z "${skip[nps]:-}" ]; then
		results+=("$(row "nixport https / nginx https" "" "$(ratio "${med[$kind:nps]}" "${med[$kind:ngs]}")" "(like with like)" "")")
	fi
	if [ "$kind" = manifest ] && [ -z "${skip[dist]:-}" ]; then
		r=$(ratio "${med[$kind:np]}" "${med[$kind:dist]}")
		results+=("$(row "nixport http / distribution" "" "$r" ">=10" "$(verdict "$r" 10)")")
	fi
}

declare -A med
# measure ARRANGEMENT: manifest and blob figures of each server, as the
# median of $rounds rounds in which the servers take turns.
measure() {
	local arr=$1 i s kind
	local -A got=()
	local live=()
	for s in "${servers[@]}"; do [ -n "${skip[$s]:-}" ] || live+=("$s"); done
	for i in $(seq 0 $((rounds - 1))); do
		# This round's order: the list rotated by the round number.
		local order=("${live[@]:i % ${#live[@]}}" "${live[@]:0:i % ${#live[@]}}")
		for s in "${order[@]}"; do got[manifest:$s]+=" $(rps "${base[$s]}$manifest_path")"; done
		for s in "${order[@]}"; do got[blob:$s]+=" $(mbps "${base[$s]}$blob_path")"; done
	done
	for kind in manifest blob; do
		local line="bench: $arr rounds, $kind:"
		for s in "${live[@]}"; do
			# shellcheck disable=SC2086 # the list is split on purpose
			med[$kind:$s]=$(median ${got[$kind:$s]})
			line="$line ${label[$s]}${got[$kind:$s]};"
		done
		echo "$line" >&2
	done
	table manifest "$arr" 0.60 0.80
	table blob "$arr" 0.90 ""
}

tls_note=""
wrk_prefix=""
start_servers "" "$cores"
tls_note="nginx https: $(tls_line "${base[ngs]}") (http2 off, to compare like with like: wrk speaks HTTP/1.1), no kTLS"
if [ -z "${skip[nps]:-}" ]; then
	tls_note="$tls_note; nixport https: $(tls_line "${base[nps]}"), measured over HTTP/1.1 (wrk)"
fi
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

echo
echo "Same bytes everywhere: manifest $manifest_path (Accept: OCI manifest), blob $blob (256 MB)."
echo "TLS: one self-signed ECDSA P-256 certificate for 127.0.0.1; $tls_note."
echo "Logs, one line per request each: nixport JSON (level ${NIXPORT_LOG_LEVEL:-info}), nginx access_log,"
echo "  distribution access log (Apache combined, stdout; log level ${DIST_LOG_LEVEL:-warn}, in-memory blob descriptor cache, traces not exported)."
echo "wrk: 1 thread; manifests 32 connections, blobs 4; ${secs} s per figure, median of $rounds round(s)."
echo
row server value "x nginx http" target ""
printf '%s\n' "${results[@]}"
