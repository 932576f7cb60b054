#!/bin/sh
# mklayout.sh OUT.tar NAME TAG: writes a one-image, two-layer OCI image
# layout as a tarball. The image holds the host's static busybox (Debian
# busybox-static) and /bin/hello, which prints a greeting naming NAME:TAG.
# Deterministic: fixed times and owners, gzip -n.
set -eu
out=$1 name=$2 tag=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/etc" "$work/layout/blobs/sha256"

cp /bin/busybox "$work/root/bin/busybox"
ln -s busybox "$work/root/bin/sh"
ln -s busybox "$work/root/bin/cat"
printf 'hello from bazel: %s:%s\n' "$name" "$tag" >"$work/root/etc/greeting"
printf '#!/bin/sh\ncat /etc/greeting\n' >"$work/root/bin/hello"
chmod 755 "$work/root/bin/hello"

sha() { sha256sum "$1" | cut -c1-64; }
size() { wc -c <"$1" | tr -d ' '; }
# blob FILE MEDIATYPE: moves FILE into the layout, prints its descriptor.
blob() {
	d=$(sha "$1")
	s=$(size "$1")
	mv "$1" "$work/layout/blobs/sha256/$d"
	printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$d" "$s"
}
# layer N FILES...: a gzipped tar layer; sets diffN and prints nothing.
layer() {
	n=$1
	shift
	tar --sort=name --mtime=@1 --owner=0 --group=0 --numeric-owner \
		-C "$work/root" -cf "$work/layer$n.tar" "$@"
	eval "diff$n=sha256:$(sha "$work/layer$n.tar")"
	gzip -n "$work/layer$n.tar"
}
layer 1 bin/busybox
layer 2 bin/sh bin/cat bin/hello etc/greeting
l1=$(blob "$work/layer1.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
l2=$(blob "$work/layer2.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)

printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/hello"]},"rootfs":{"type":"layers","diff_ids":["%s","%s"]}}' \
	"$diff1" "$diff2" >"$work/config.json"
config=$(blob "$work/config.json" application/vnd.oci.image.config.v1+json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s,%s]}' \
	"$config" "$l1" "$l2" >"$work/manifest.json"
manifest=$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)

printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
	"$manifest" >"$work/layout/index.json"
tar --sort=name --mtime=@1 --owner=0 --group=0 --numeric-owner \
	-C "$work/layout" -cf "$out" oci-layout index.json blobs
