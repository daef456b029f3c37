#!/usr/bin/env bash
# `make demo`: build rune, build a busybox image locally, and run a container from it with
# rune as the runtime of a private containerd (ctr run --runc-binary). Leaves nothing
# running and never uses the host's containerd or docker.
#
# Environment: RUNE_BIN=/path/to/runtime runs the demo with another runc-compatible binary
# (and skips the build); SKIP_DEPS=1 skips scripts/install-deps.sh; KEEP_WORKDIR=1 keeps
# the work directory (image, containerd log) for inspection.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/image.sh
. "$RUNE_REPO/scripts/lib/image.sh"
# shellcheck source=scripts/lib/containerd.sh
. "$RUNE_REPO/scripts/lib/containerd.sh"

require_root "the demo"
[ "${SKIP_DEPS:-0}" = 1 ] || "$RUNE_REPO/scripts/install-deps.sh"
ensure_cargo

if [ -n "${RUNE_BIN:-}" ]; then
    runtime="$(command -v "$RUNE_BIN")" || die "RUNE_BIN=$RUNE_BIN not found"
    runtime="$(readlink -f "$runtime")"
    log "using runtime $runtime (RUNE_BIN)"
else
    log "building rune (cargo build --release -p rune)"
    (cd "$RUNE_REPO" && cargo build --release -p rune)
    runtime="$(rune_release_bin)"
    [ -x "$runtime" ] || die "no binary at $runtime after the build"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/rune-demo.XXXXXX")"
cleanup() {
    local rc=$?
    containerd_stop
    if [ "${KEEP_WORKDIR:-0}" = 1 ]; then
        log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

image=docker.io/library/rune-busybox:latest
log "building image $image from Debian's busybox-static (umoci, skopeo)"
archive="$(image_build_busybox_archive "$work/image" "$image")"

containerd_start "$work/containerd"
log "importing the image"
ctrd_ctr images import "$archive" >/dev/null
ctrd_ctr images ls -q | grep -qx "$image" || die "image $image missing after import"

id="demo-$$"
log "ctr run --runc-binary $runtime $image $id"
echo "---------------------------------------------------------------------------"
ctrd_ctr run --rm --fifo-dir "$CTRD_DIR/fifo" --runc-binary "$runtime" \
    "$image" "$id" sh -c 'echo hello from rune; uname -a; cat /proc/self/cgroup | head -3' </dev/null
echo "---------------------------------------------------------------------------"
log "demo finished: the container ran under $(basename "$runtime") and was removed"
