#!/usr/bin/env bash
# Installs what nixport needs on a Debian machine, as root, when it is
# missing. Sourced by scripts/run and scripts/test; safe to run again.
#   source scripts/setup.sh run    what running needs: Nix (Debian's nix-bin,
#                                  single-user, offline by default), git, and
#                                  a static busybox for the offline package set
#   source scripts/setup.sh test   that, and the registry clients, benchmark
#                                  tools and Bazel the tests use
# Go tools (crane, the OCI conformance suite, fake-gcs-server, versitygw) are
# pinned in go.mod and built with `go tool`, so they need no install here.
set -euo pipefail

export PATH="/usr/local/go/bin:$PATH"

setup_mode=${1:-test}
pkgs=(nix-bin nix-setup-systemd busybox-static git ca-certificates)
case "$setup_mode" in
run) ;;
test) pkgs+=(skopeo pigz wrk nginx-light curl openssl bazel-bootstrap apache2-utils) ;;
*)
	echo "setup: unknown mode $setup_mode (run or test)" >&2
	exit 2
	;;
esac

need_pkgs=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in "${pkgs[@]}"; do
	have "$pkg" || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
	echo "setup: installing ${need_pkgs[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
	echo "setup: Go 1.26 is needed (expected at /usr/local/go/bin/go)" >&2
	exit 1
fi

# Debian's nix-setup-systemd creates the nixbld users from a systemd unit;
# on a machine without systemd running, make sure they exist.
if ! getent group nixbld >/dev/null; then
	groupadd --system nixbld
fi
if ! id nixbld1 >/dev/null 2>&1; then
	for i in $(seq 1 8); do
		useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
			--gid nixbld --groups nixbld "nixbld$i" 2>/dev/null || true
	done
fi

# Offline by default: no binary cache is contacted unless configured
# (NIXPORT_SUBSTITUTERS). nixport passes its own NIX_CONFIG too; this makes
# hand-run nix commands on the machine behave the same way.
mkdir -p /etc/nix
if ! grep -q '^substituters' /etc/nix/nix.conf 2>/dev/null; then
	cat >>/etc/nix/nix.conf <<'CONF'
sandbox = false
substituters =
build-poll-interval = 1
experimental-features = nix-command
CONF
fi
mkdir -p /nix/var/nix/gcroots /nix/var/nix/profiles
