#!/usr/bin/env bash
# `make demo`: the main job, end to end on one node. Builds rune and its tools, sets the node
# up as an operator would (the provider's signing key, a signer policy, a report key, the
# shim's config), starts a private containerd whose CRI plugin has a runtime handler `rune`
# (what a Kubernetes RuntimeClass names), imports a locally built image, and runs it as a pod
# through CRI, the way kubelet does, with RUNE_CARRIER=software on the container: the shim
# turns the ordinary image into a signed software enclave image at create time and rune runs
# the workload in it. Prints the workload's output and the enclave's measurement and signer.
# Leaves nothing running and never uses the host's containerd or docker.
#
# Environment:
#   DEMO_IMAGE=busybox (default)   Debian's static busybox
#   DEMO_IMAGE=python3             a Debian 12 root with python3 (debootstrap, needs the network
#                                  the first time; cached under target/test-cache)
#   SKIP_DEPS=1                    skip scripts/install-deps.sh
#   KEEP_WORKDIR=1                 keep the work directory (node set-up, containerd log)
#
# Ctrl-C (SIGINT), SIGTERM or SIGHUP stop it cleanly: rune-cri gets the signal and removes
# its pod through containerd, which terminal signals do not reach (a session of its own);
# then the script stops containerd, removes what the run made, says it was interrupted and
# exits with 128 + the signal's number (130, 143, 129).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/image.sh
. "$RUNE_REPO/scripts/lib/image.sh"
# shellcheck source=scripts/lib/containerd.sh
. "$RUNE_REPO/scripts/lib/containerd.sh"
# shellcheck source=scripts/lib/python-rootfs.sh
. "$RUNE_REPO/scripts/lib/python-rootfs.sh"

# Interruption. bash runs no trap while a foreground command runs, and none at all for a
# SIGINT that the command handled itself and survived (as rune-cri does: it removes its pod
# first). So the commands that talk to containerd run through run_child, in the background
# while the script waits for them: the trap then runs at once, records the signal, passes it
# on to the command (which may not have had it: `kill PID` of the script alone) and lets it
# finish; the script stops after it. At any other moment the trap exits straight away.
interrupted=0 # 128 + the number of the signal that interrupted the run, or 0
child=""      # the command run_child is waiting for
on_signal() {
    interrupted=$((128 + $(kill -l "$1")))
    if [ -n "$child" ]; then
        kill -s "$1" "$child" 2>/dev/null || true
    else
        exit "$interrupted"
    fi
}
for sig in INT TERM HUP; do
    # shellcheck disable=SC2064 # $sig now
    trap "on_signal $sig" "$sig"
done

# run_child CMD ARG...: run the program CMD (not a function), wait for it; its exit status.
run_child() {
    local rc=0
    # bash would start a background command with SIGINT ignored: given back its default
    (
        trap - INT TERM HUP
        exec "$@"
    ) &
    child=$!
    # wait returns early when a trapped signal arrives: wait again until CMD has finished
    while kill -0 "$child" 2>/dev/null; do
        wait "$child" || true
    done
    wait "$child" || rc=$? # its status, which bash keeps
    child=""
    return "$rc"
}

work="" # the work directory, once made
cleanup() {
    local rc=$?
    # nothing interrupts the clean-up (its commands inherit the ignoring, and have timeouts)
    trap '' INT TERM HUP
    [ "$interrupted" -eq 0 ] || rc=$interrupted
    containerd_stop
    if [ -z "$work" ]; then
        :
    elif [ "${KEEP_WORKDIR:-0}" = 1 ]; then
        log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    if [ "$interrupted" -ne 0 ]; then
        printf 'interrupted (SIG%s): the demo stopped and removed what it had started\n' \
            "$(kill -l "$interrupted")" >&2 || true
    fi
    exit "$rc"
}
trap cleanup EXIT

require_root "the demo"
demo_image="${DEMO_IMAGE:-busybox}"
case "$demo_image" in
busybox | python3) ;;
*) die "DEMO_IMAGE=$demo_image: choose busybox or python3" ;;
esac
[ "${SKIP_DEPS:-0}" = 1 ] || "$RUNE_REPO/scripts/install-deps.sh"
ensure_cargo

log "building rune, containerd-shim-rune-v2, rune-enclave, the software enclave PAL and rune-cri (release)"
(cd "$RUNE_REPO" && cargo build --release -p rune -p shim-rune -p rune-enclave \
    -p liberpal-software -p rune-cri)
bin="$(dirname "$(rune_release_bin)")"
for f in rune containerd-shim-rune-v2 rune-enclave libliberpal_software.so rune-cri; do
    [ -e "$bin/$f" ] || die "no $bin/$f after the build"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/rune-demo.XXXXXX")"

# The node: what /etc/inclavare-containers and /usr/local/lib/rune hold on an installed node,
# here private to this run. The shim signs converted images with the provider's key; the
# software PAL admits only the signers the policy names and seals local reports with the
# report key.
log "setting up the node in $work/node"
node="$work/node"
mkdir -p "$node/pal"
chmod 0700 "$node"
install -m 0755 "$bin/libliberpal_software.so" "$node/pal/liberpal-software.so"
signer="$("$bin/rune-enclave" keygen --out "$node/signing-key.pem" 2>/dev/null | tail -n 1)"
printf 'allowed_signers = ["%s"]\nallow_debug = false\n' "$signer" >"$node/policy.toml"
head -c 32 /dev/urandom >"$node/report.key"
chmod 0600 "$node/report.key"
cat >"$node/config.toml" <<TOML
[enclave_runtime]
signature_method = "server"
signing_key = "$node/signing-key.pem"
cache_dir = "$node/carrier-cache"

[enclave_runtime.software]
enclave_runtime_path = "$node/pal/liberpal-software.so"
TOML

# containerd passes its environment to the shims it starts, and they to rune: the shim's
# config, the PAL directory rune may load from, the policy and report key of the PAL. The
# shim is found on PATH and finds rune and rune-enclave beside itself.
export RUNE_SHIM_CONFIG="$node/config.toml"
export RUNE_PAL_DIRS="$node/pal"
export RUNE_SOFTWARE_ENCLAVE_POLICY="$node/policy.toml"
export RUNE_SOFTWARE_ENCLAVE_REPORT_KEY="$node/report.key"
export PATH="$bin:$PATH"

pause=registry.k8s.io/pause:rune-local
log "building the pod sandbox image $pause (a static /pause)"
pause_archive="$(image_build_pause_archive "$work/pause" "$pause")"

carrier_env=(--env RUNE_CARRIER=software)
case "$demo_image" in
busybox)
    image=docker.io/library/busybox:rune-local
    log "building image $image from Debian's busybox-static"
    archive="$(image_build_busybox_archive "$work/image" "$image")"
    # Built-ins only: the enclave starts /bin/sh and nothing else unless the container lists
    # more programs in RUNE_SOFTWARE_ENTRYPOINTS.
    workload=(sh -c 'echo "hello from an enclave container (pid $$)";
        while read -r key value; do
            case "$key" in NoNewPrivs:|Seccomp:) echo "  $key $value" ;; esac
        done </proc/self/status')
    ;;
python3)
    image=docker.io/library/python:rune-local
    rootfs="$(python_rootfs)" || die "could not build the python3 root filesystem"
    log "building image $image from a Debian 12 root with python3"
    archive="$(image_build_rootfs_archive "$work/image" "$image" "$rootfs" /usr/bin/python3)"
    # The interpreter's standard library is data the enclave reads: it is measured too.
    carrier_env+=(--env RUNE_SOFTWARE_TRUST=/usr/lib/python3.11)
    workload=(python3 -c 'import platform, sys
print("hello from Python %s in an enclave container" % platform.python_version())
print("  %d modules loaded, from files measured into the enclave image" % len(sys.modules))')
    ;;
esac

export CTRD_NS=k8s.io CTRD_CRI_SANDBOX_IMAGE="$pause"
containerd_start "$work/containerd"
log "importing the images"
for a in "$pause_archive" "$archive"; do
    run_child ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" images import "$a" >/dev/null ||
        [ "$interrupted" -ne 0 ] || die "ctr images import $a failed"
    [ "$interrupted" -eq 0 ] || exit "$interrupted"
done

log "rune-cri run --runtime-handler rune --image $image ${carrier_env[*]} -- ${workload[*]:0:2} ..."
echo "---------------------------------------------------------------------------"
rc=0
run_child "$bin/rune-cri" run --endpoint "unix://$CTRD_SOCK" --runtime-handler rune \
    --image "$image" --name rune-demo "${carrier_env[@]}" \
    -- "${workload[@]}" </dev/null || rc=$?
echo "---------------------------------------------------------------------------"
# interrupted: no measurement; the clean-up says so and exits with the signal's status
[ "$interrupted" -eq 0 ] || exit "$interrupted"
# The shim logs one line per conversion, with the container id, through containerd.
line="$(grep -o 'carrier software [a-z ]*in [0-9]* ms: measurement [0-9a-f]* signer [0-9a-f]*' \
    "$CTRD_DIR/containerd.log" | tail -n 1 || true)"
if [ -z "$line" ]; then
    tail -n 30 "$CTRD_DIR/containerd.log" >&2
    die "the shim logged no software conversion (containerd log above)"
fi
measurement="${line##*measurement }"
measurement="${measurement%% *}"
echo "enclave:     software (measured, signed, confined; no memory encryption)"
echo "measurement: $measurement"
echo "signer:      ${line##*signer }"
echo "conversion:  ${line%%: measurement*}"
echo "---------------------------------------------------------------------------"
[ "$rc" -eq 0 ] || die "the workload exited with status $rc"
log "demo finished: the pod ran through CRI, its container in a software enclave, and was removed"
