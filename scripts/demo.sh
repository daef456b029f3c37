#!/usr/bin/env bash
# `make demo`: build rune, build a busybox image locally, sign it as a software enclave on the
# client side (rune-enclave), and run it as an enclave container with rune as the runtime of
# a private containerd (ctr run --runc-binary). Prints the workload's output and the
# enclave's measurement and signer. Leaves nothing running and never uses the host's
# containerd or docker.
#
# Environment: SKIP_DEPS=1 skips scripts/install-deps.sh; KEEP_WORKDIR=1 keeps the work
# directory (image, key, policy, containerd log) for inspection.
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/image.sh
. "$RUNE_REPO/scripts/lib/image.sh"
# shellcheck source=scripts/lib/containerd.sh
. "$RUNE_REPO/scripts/lib/containerd.sh"

require_root "the demo"
[ "${SKIP_DEPS:-0}" = 1 ] || "$RUNE_REPO/scripts/install-deps.sh"
ensure_cargo

log "building rune, rune-enclave and the software enclave PAL (release)"
(cd "$RUNE_REPO" && cargo build --release -p rune -p rune-enclave -p liberpal-software)
runtime="$(rune_release_bin)"
rune_enclave="$RUNE_REPO/target/release/rune-enclave"
pal="$RUNE_REPO/target/release/libliberpal_software.so"
for f in "$runtime" "$rune_enclave" "$pal"; do
    [ -e "$f" ] || die "no $f after the build"
done

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

# The image author's side: a signing key, and the image signed before it is packed.
log "generating the image author's signing key (RSA-3072, e=3)"
key="$work/author-key.pem"
inspect="$work/inspect.txt"
signer="$("$rune_enclave" keygen --out "$key" 2>/dev/null | tail -n 1)"
sign_rootfs() {
    "$rune_enclave" build --rootfs "$1" --entrypoint /bin/sh --entrypoint /bin/busybox \
        --writable /tmp --env PATH=/bin:/usr/bin >&2
    "$rune_enclave" sign --rootfs "$1" --key "$key" >&2
    "$rune_enclave" inspect --rootfs "$1" >"$inspect"
}

image=docker.io/library/rune-busybox-enclave:latest
log "building image $image from Debian's busybox-static, signed as a software enclave"
archive="$(image_build_busybox_archive "$work/image" "$image" sign_rootfs)"

# The node's side: which signers may run here, and the key local reports are sealed with.
# rune reads both through the software PAL, from the environment containerd passes on.
printf 'allowed_signers = ["%s"]\nallow_debug = false\n' "$signer" >"$work/policy.toml"
head -c 32 /dev/urandom >"$work/report.key"
chmod 0600 "$work/report.key"
export RUNE_SOFTWARE_ENCLAVE_POLICY="$work/policy.toml"
export RUNE_SOFTWARE_ENCLAVE_REPORT_KEY="$work/report.key"
# rune loads PALs only from the node's PAL directories; this one is the build's.
export RUNE_PAL_DIRS="$(dirname "$pal")"

containerd_start "$work/containerd"
log "importing the image"
ctrd_ctr images import "$archive" >/dev/null
ctrd_ctr images ls -q | grep -qx "$image" || die "image $image missing after import"

id="demo-$$"
log "ctr run --runc-binary $runtime --env ENCLAVE_TYPE=software $image $id"
echo "---------------------------------------------------------------------------"
ctrd_ctr run --rm --fifo-dir "$CTRD_DIR/fifo" --runc-binary "$runtime" \
    --env ENCLAVE_TYPE=software --env ENCLAVE_RUNTIME_PATH="$pal" \
    "$image" "$id" sh -c 'echo "hello from a software enclave (pid $$ in the container)"; uname -sr' </dev/null
echo "---------------------------------------------------------------------------"
grep -E '^(measurement|signer|debug):' "$inspect"
echo "---------------------------------------------------------------------------"
log "demo finished: the workload ran in a software enclave under rune and was removed"
log "(a software enclave is measured, signed and confined; it has no memory encryption)"
