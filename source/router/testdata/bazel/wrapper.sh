#!/bin/sh
# wrapper.sh NAME TAG OUT: the program of a nixport "command" route that
# builds images with Bazel. NAME is the repository name (bazel/hello), TAG
# its tag, OUT the empty directory the OCI layout goes to. It builds
# //images/<NAME without its first component>:image and extracts the
# layout tarball that target outputs into OUT.
#
# Environment (the route's "env"): BAZEL_WORKSPACE, the workspace;
# BAZEL_OUTPUT_USER_ROOT, Bazel's output root (one per server).
#
# Start-up flags: Debian's bazel-bootstrap needs --install_base and
# --trust_install_base beside --ignore_all_rc_files; the server stays up
# for --max_idle_secs between builds.
set -eu
name=$1 tag=$2 out=$3
pkg=${name#*/}
startup="--ignore_all_rc_files --install_base=/usr/share/bazel --trust_install_base --output_user_root=$BAZEL_OUTPUT_USER_ROOT --max_idle_secs=300"
build="--spawn_strategy=local --symlink_prefix=/ --define=NIXPORT_NAME=$name --define=NIXPORT_TAG=$tag"
cd "$BAZEL_WORKSPACE"
# shellcheck disable=SC2086 # the flags are words
bazel $startup build $build "//images/$pkg:image"
# shellcheck disable=SC2086
bin=$(bazel $startup info $build bazel-bin)
tar -xf "$bin/images/$pkg/layout.tar" -C "$out"
