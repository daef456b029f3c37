#!/usr/bin/env bash
# shellcheck disable=SC2317 # row functions and traps are called indirectly
# Benchmark rune: against runc, and enclave containers against plain ones. Each row times one
# thing done two ways, its sides "a" and "b", interleaved round by round (a, b, a, b, ...),
# each round with a fresh --root directory:
#   - runtime rows (bench_row): a = rune, b = runc, on the same bundle (a busybox root
#     filesystem and a config made by `runc spec`, terminal off);
#   - variant rows (bench_pair): a and b both run rune, each on its own bundle (here: the same
#     signed busybox image as a software enclave container, a, and as a plain container, b);
#   - single rows (bench_single): side a only, nothing to compare with (rune-enclave build+sign).
# The wall time of whole commands is measured with bash's $EPOCHREALTIME (no fork around the
# timed commands). Prints a table of medians (the last column says what a and b are) and one
# machine-readable line per row:
#     BENCH <row> <a_ms> <b_ms> <ratio a/b>        (b_ms and ratio are "-" for single rows)
# For runtime rows that is BENCH <row> <rune_ms> <runc_ms> <ratio rune/runc>, as before.
# Then bench/containerd.sh's rows (shim memory per container, ctr run --rm through
# containerd, the software carrier), in the same table and BENCH format; their last column
# says what they measure (some are KiB, not ms; run-rm is a mean, not a median).
# Nothing is asserted about the times. Exit status: 0 unless a row failed.
#
# Environment:
#   RUNE=path     rune binary (default: target/release/rune; make bench builds it)
#   RUNC=path     runtime measured as "runc" (default: runc on PATH)
#   RUNE_ENCLAVE=path  rune-enclave binary for the enclave rows (default:
#                 target/release/rune-enclave; make bench builds it)
#   RUNE_PAL=path the software enclave PAL for the enclave rows (default:
#                 target/release/libliberpal_software.so; make bench builds it)
#   ROUNDS=N      timed rounds per side and row (default 30, at least 1)
#   WARMUP=N      untimed rounds per side before each row (default 2)
#   ORDER=alternate|abba  alternate: a first in every round (a, b, a, b, ...); abba: b first
#                 in even rounds, which cancels any advantage of going first or second
#                 (default alternate)
#   BENCH_ROWS=a,b  only the rows whose names are listed (default: all); the names of the
#                 containerd sections (shim-memory, run-rm, carrier) select those
#   BENCH_CONTAINERD=0  skip the containerd rows (bench/containerd.sh: rune's shim against
#                 runc's through a private containerd; its own variables, CTRD_SHIMS,
#                 CTRD_RUNS, CARRIER_ROUNDS, RUNE_BIN_DIR, are described there)
#   SKIP_DEPS=1   do not run scripts/install-deps.sh
#   KEEP_WORKDIR=1  keep the work directory (bundles, runtime logs)
#
# Adding a row: write a function row_<x>_timed (and, if needed, row_<x>_setup and
# row_<x>_teardown), then register it below with one line:
#   bench_row "<name>" '<args JSON>' row_<x>                 rune vs runc, one bundle
#   bench_pair "<name>" '<args JSON>' row_<x> "<a>" "<b>"     rune vs rune, two bundles; the
#       bundles start as the runtime rows' (same args) and row_<x>_bundle SIDE DIR (SIDE is a
#       or b) edits each: config.json, rootfs, ...; "<a>" and "<b>" say what the sides are
#   bench_single "<name>" row_<x> "<what>"                   side a only
# Each function gets: RT (runtime binary), ROOT (its --root for this round), ID (container
# id), BUNDLE (the side's bundle directory), SIDE (a or b), and may use the file $ROOT.pid;
# `rt ARGS...` runs "$RT" --root "$ROOT" ARGS with stdin from /dev/null and output appended
# to the round's log. Setup and teardown are not timed; teardown must leave no container
# behind (the default one force-deletes ID).
set -uo pipefail
export LC_ALL=C
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
# shellcheck source=scripts/lib/image.sh
. "$RUNE_REPO/scripts/lib/image.sh"

# ---------------------------------------------------------------------------------------
# Rows

ROW_NAMES=()
declare -A ROW_ARGS ROW_FN ROW_KIND ROW_A ROW_B

# bench_row NAME ARGS_JSON PREFIX: a row named NAME whose container runs ARGS_JSON, in rune (a)
# and in runc (b).
bench_row() {
    ROW_NAMES+=("$1")
    ROW_ARGS["$1"]="$2"
    ROW_FN["$1"]="$3"
    ROW_KIND["$1"]=runtimes
    ROW_A["$1"]=rune
    ROW_B["$1"]=runc
}

# bench_pair NAME ARGS_JSON PREFIX A_WHAT B_WHAT: both sides in rune, each on its own bundle
# (PREFIX_bundle a|b DIR makes the difference).
bench_pair() {
    bench_row "$1" "$2" "$3"
    ROW_KIND["$1"]=variants
    ROW_A["$1"]="$4"
    ROW_B["$1"]="$5"
}

# bench_single NAME PREFIX WHAT: side a only (RT is rune; the bundle is a runtime row's, for
# rows that need one).
bench_single() {
    bench_row "$1" '["true"]' "$2"
    ROW_KIND["$1"]=single
    ROW_A["$1"]="$3"
    ROW_B["$1"]=-
}

# run true: foreground `run` of a container running `true`; the delete is not timed.
row_run_timed() { rt run --bundle "$BUNDLE" "$ID"; }

# create+start+delete: the three commands and the wait for the container to stop between
# start and delete (polled in /proc without forking).
row_csd_timed() {
    local pid=""
    rt create --bundle "$BUNDLE" --pid-file "$ROOT.pid" "$ID" || return 1
    read -r pid <"$ROOT.pid" || [ -n "$pid" ] || return 1 # the file may lack a newline
    rt start "$ID" || return 1
    wait_exited "$pid" || return 1
    rt delete "$ID"
}

# exec true: `exec` of `true` in a running container (running `sleep 1000`).
row_exec_setup() { rt run --detach --bundle "$BUNDLE" "$ID"; }
row_exec_timed() { rt exec "$ID" true; }
row_exec_teardown() {
    rt kill "$ID" KILL || true
    rt delete --force "$ID"
}

# --- Software enclave rows: the same signed image as an enclave container (a) and as a plain
# container (b), both in rune; and the client-side image build. See enclave_setup below.

# run true of the signed busybox image: a enclave, b plain.
row_enclave_bundle() { enclave_bundle "$1" "$2" busybox-rootfs; }
row_enclave_timed() { row_run_timed; }

# The same with ~100 MB of trusted files (5 random files of 20 MiB in /data, all measured),
# which pal_init hashes at every start.
row_enclave100_bundle() { enclave_bundle "$1" "$2" 100mb-rootfs; }
row_enclave100_timed() { row_run_timed; }

# rune-enclave build + sign of a ~100 MB rootfs (busybox + the 5 random files, all trusted).
row_buildsign_setup() { enclave_setup; }
row_buildsign_timed() {
    "$RUNE_ENCLAVE_BIN" build --rootfs "$ENCLAVE_WORK/build-rootfs" --entrypoint /bin/true \
        --entrypoint /bin/sh --trust /data --writable /tmp >>"$RTLOG" 2>&1 &&
        "$RUNE_ENCLAVE_BIN" sign --rootfs "$ENCLAVE_WORK/build-rootfs" \
            --key "$ENCLAVE_WORK/key.pem" >>"$RTLOG" 2>&1
}
row_buildsign_teardown() { :; }

bench_row "run true" '["true"]' row_run
bench_row "create+start+delete" '["true"]' row_csd
bench_row "exec true" '["sleep","1000"]' row_exec
bench_pair "enclave run true" '["true"]' row_enclave \
    "rune, software enclave (signed busybox)" "rune, plain container (same rootfs)"
bench_pair "enclave run true 100MB" '["true"]' row_enclave100 \
    "rune, software enclave (busybox + 100 MB trusted)" "rune, plain container (same rootfs)"
bench_single "rune-enclave build+sign 100MB" row_buildsign \
    "rune-enclave build + sign, ~100 MB rootfs (no counterpart)"

# ---------------------------------------------------------------------------------------
# Software enclave images (made once, the first time an enclave row needs them)

ENCLAVE_WORK=""

# enclave_setup: a signing key, the node's policy and report key (exported for rune, which
# reads them when it loads the PAL), and three root filesystems made from the bench's busybox
# rootfs: busybox-rootfs (signed image; entrypoints /bin/true and /bin/sh), 100mb-rootfs (the
# same plus /data/blob1..5, 20 MiB of random bytes each, trusted) and build-rootfs (an unbuilt
# copy of 100mb-rootfs for the build+sign row).
enclave_setup() {
    [ -z "$ENCLAVE_WORK" ] || return 0
    local w="$WORK/enclave" signer i
    [ -x "$RUNE_ENCLAVE_BIN" ] || {
        warn "no rune-enclave binary ($RUNE_ENCLAVE_BIN): run 'make bench' or set RUNE_ENCLAVE"
        return 1
    }
    [ -f "$RUNE_PAL_SO" ] || {
        warn "no software PAL ($RUNE_PAL_SO): run 'make bench' or set RUNE_PAL"
        return 1
    }
    mkdir -p "$w" || return 1
    log "enclave rows: signing key, policy, images (100 MB of random files)"
    signer="$("$RUNE_ENCLAVE_BIN" keygen --out "$w/key.pem" 2>>"$w/setup.log" | tail -n1)" || return 1
    printf 'allowed_signers = ["%s"]\nallow_debug = false\n' "$signer" >"$w/policy.toml"
    head -c 32 /dev/urandom >"$w/report.key" && chmod 600 "$w/report.key" || return 1
    export RUNE_SOFTWARE_ENCLAVE_POLICY="$w/policy.toml"
    export RUNE_SOFTWARE_ENCLAVE_REPORT_KEY="$w/report.key"
    cp -a "$WORK/rootfs" "$w/busybox-rootfs" || return 1
    cp -a "$WORK/rootfs" "$w/100mb-rootfs" || return 1
    mkdir -p "$w/100mb-rootfs/data"
    for i in 1 2 3 4 5; do
        head -c $((20 << 20)) /dev/urandom >"$w/100mb-rootfs/data/blob$i" || return 1
    done
    cp -a "$w/100mb-rootfs" "$w/build-rootfs" || return 1
    if ! {
        "$RUNE_ENCLAVE_BIN" build --rootfs "$w/busybox-rootfs" --entrypoint /bin/true \
            --entrypoint /bin/sh --writable /tmp &&
            "$RUNE_ENCLAVE_BIN" sign --rootfs "$w/busybox-rootfs" --key "$w/key.pem" &&
            "$RUNE_ENCLAVE_BIN" build --rootfs "$w/100mb-rootfs" --entrypoint /bin/true \
                --entrypoint /bin/sh --trust /data --writable /tmp &&
            "$RUNE_ENCLAVE_BIN" sign --rootfs "$w/100mb-rootfs" --key "$w/key.pem"
    } >>"$w/setup.log" 2>&1; then
        warn "building the enclave images failed (log: $w/setup.log)"
        tail -n 5 "$w/setup.log" >&2
        return 1
    fi
    ENCLAVE_WORK="$w"
}

# enclave_bundle SIDE DIR NAME: point the bundle in DIR at the rootfs NAME of enclave_setup;
# side a also asks for a software enclave (the env docker and containerd users set).
enclave_bundle() {
    local side="$1" dir="$2" rootfs
    enclave_setup || return 1
    rootfs="$ENCLAVE_WORK/$3"
    jq --arg root "$rootfs" --arg pal "$RUNE_PAL_SO" --arg side "$side" \
        '.root.path = $root
         | if $side == "a" then .process.env += ["ENCLAVE_TYPE=software", "ENCLAVE_RUNTIME_PATH=" + $pal] else . end' \
        "$dir/config.json" >"$dir/config.json.new" && mv "$dir/config.json.new" "$dir/config.json"
}

# ---------------------------------------------------------------------------------------
# Machinery

RT="" ROOT="" ID="" BUNDLE="" SIDE="" RTLOG=/dev/null

rt() { "$RT" --root "$ROOT" "$@" </dev/null >>"$RTLOG" 2>&1; }

default_teardown() { rt delete --force "$ID" || true; }

# wait_exited PID: until PID is gone or a zombie (5 s at most).
wait_exited() {
    local pid="$1" stat i
    for ((i = 0; i < 50000; i++)); do
        stat=""
        read -r stat 2>/dev/null <"/proc/$pid/stat" || return 0
        stat="${stat##*) }"
        case "${stat%% *}" in Z | X) return 0 ;; esac
        ((i < 1000)) || sleep 0.001
    done
    return 1
}

usec() { local t="${1/./}"; printf '%s\n' "$((10#$t))"; }

# side_runtime ROW SIDE: the runtime label (rune or runc) of a side of a row.
side_runtime() {
    if [ "${ROW_KIND[$1]}" = runtimes ] && [ "$2" = b ]; then echo runc; else echo rune; fi
}

# side_bundle ROW SIDE: the bundle directory of a side of a row.
side_bundle() {
    if [ "${ROW_KIND[$1]}" = variants ]; then
        echo "$WORK/bundles/${SLUG[$1]}.$2"
    else
        echo "$WORK/bundles/${SLUG[$1]}"
    fi
}

# one_round SIDE ROW ROUND: sets ELAPSED to the microseconds of the timed part.
one_round() {
    local side="$1" row="$2" round="$3" fn="${ROW_FN[$2]}" t0 t1 rc label
    label="$(side_runtime "$row" "$side")"
    # shellcheck disable=SC2034 # for the row functions
    SIDE="$side"
    RT="${BIN[$label]}"
    ROOT="$WORK/roots/$label-$side-$round"
    ID="bench-$$-$round"
    BUNDLE="$(side_bundle "$row" "$side")"
    RTLOG="$WORK/logs/${SLUG[$row]}.$side.log"
    rm -rf "$ROOT" && mkdir -p "$ROOT"
    printf -- '--- %s round %s\n' "$row" "$round" >>"$RTLOG"
    if declare -F "${fn}_setup" >/dev/null && ! "${fn}_setup"; then
        warn "$side ($label): setup of \"$row\" failed (log: $RTLOG)"
        cleanup_root
        return 1
    fi
    t0=$EPOCHREALTIME
    "${fn}_timed"
    rc=$?
    t1=$EPOCHREALTIME
    if declare -F "${fn}_teardown" >/dev/null; then "${fn}_teardown" || true; else default_teardown; fi
    cleanup_root
    if [ "$rc" -ne 0 ]; then
        warn "$side ($label): \"$row\" failed with status $rc (log: $RTLOG)"
        tail -n 5 "$RTLOG" >&2
        return 1
    fi
    ELAPSED=$(($(usec "$t1") - $(usec "$t0")))
}

# Force-delete whatever the round left in ROOT, then remove ROOT.
cleanup_root() {
    local id
    for id in $("$RT" --root "$ROOT" list -q 2>/dev/null); do
        "$RT" --root "$ROOT" kill "$id" KILL >/dev/null 2>&1 || true
        "$RT" --root "$ROOT" delete --force "$id" >/dev/null 2>&1 || true
    done
    rm -rf "$ROOT" "$ROOT.pid"
}

median_ms() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f\n", m / 1000 }'
}

# ---------------------------------------------------------------------------------------
# Main

require_root "the benchmark"
[ "${SKIP_DEPS:-0}" = 1 ] || "$RUNE_REPO/scripts/install-deps.sh" || exit 1

ROUNDS="${ROUNDS:-30}"
WARMUP="${WARMUP:-2}"
ORDER="${ORDER:-alternate}"
[[ "$ORDER" =~ ^(alternate|abba)$ ]] || die "ORDER must be alternate or abba"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer"

declare -A BIN SLUG
BIN[rune]="$(readlink -f "$(command -v "${RUNE:-$(rune_release_bin)}" || true)")"
BIN[runc]="$(readlink -f "$(command -v "${RUNC:-runc}" || true)")"
RUNE_ENCLAVE_BIN="$(readlink -f "${RUNE_ENCLAVE:-$(dirname "$(rune_release_bin)")/rune-enclave}")"
RUNE_PAL_SO="$(readlink -f "${RUNE_PAL:-$(dirname "$(rune_release_bin)")/libliberpal_software.so}")"
# rune loads PALs only from the node's PAL directories: admit the one being measured.
RUNE_PAL_DIRS="${RUNE_PAL_DIRS:+$RUNE_PAL_DIRS:}$(dirname "$RUNE_PAL_SO")"
export RUNE_PAL_DIRS
[ -x "${BIN[rune]}" ] || die "no rune binary (${RUNE:-$(rune_release_bin)}): run 'make bench' or set RUNE"
[ -x "${BIN[runc]}" ] || die "no runc binary (${RUNC:-runc}): set RUNC"
command -v jq >/dev/null || die "jq is missing"

CTRD_SECTION_NAMES=(shim-memory run-rm carrier) # bench/containerd.sh
selected=() ctrd_selected=()
if [ -n "${BENCH_ROWS:-}" ]; then
    IFS=, read -r -a wanted <<<"$BENCH_ROWS"
    for w in "${wanted[@]}"; do
        if [ -n "${ROW_FN[$w]+x}" ]; then
            selected+=("$w")
        elif [[ " ${CTRD_SECTION_NAMES[*]} " == *" $w "* ]]; then
            ctrd_selected+=("$w")
        else
            die "unknown row \"$w\" (rows: ${ROW_NAMES[*]}; containerd: ${CTRD_SECTION_NAMES[*]})"
        fi
    done
else
    selected=("${ROW_NAMES[@]}")
    [ "${BENCH_CONTAINERD:-1}" = 0 ] || ctrd_selected=("${CTRD_SECTION_NAMES[@]}")
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rune-bench.XXXXXX")"
finish() {
    local label d
    for label in rune runc; do
        RT="${BIN[$label]}"
        for d in "$WORK"/roots/"$label"-*; do
            [ -d "$d" ] && ROOT="$d" cleanup_root
        done
    done
    if [ "${KEEP_WORKDIR:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK"/{roots,bundles,logs,results}

image_busybox_rootfs "$WORK/rootfs"
"${BIN[runc]}" spec --bundle "$WORK" || die "runc spec failed"
mv "$WORK/config.json" "$WORK/spec.json"
# sides ROW: the sides a row times.
sides() { if [ "${ROW_KIND[$1]}" = single ]; then echo a; else echo a b; fi; }

failed=0
for row in "${selected[@]}"; do
    slug="${row// /_}"
    SLUG[$row]="$slug"
    for side in $(sides "$row"); do
        dir="$(side_bundle "$row" "$side")"
        mkdir -p "$dir"
        jq --arg root "$WORK/rootfs" --argjson args "${ROW_ARGS[$row]}" \
            '.process.args = $args | .process.terminal = false | .root.path = $root
             | .root.readonly = true | .hostname = "bench"' \
            "$WORK/spec.json" >"$dir/config.json" || die "bad args for row \"$row\""
        if [ "${ROW_KIND[$row]}" = variants ] && ! "${ROW_FN[$row]}_bundle" "$side" "$dir"; then
            warn "cannot make bundle $side of \"$row\""
            SLUG[$row]="" # marks the row as failed
        fi
    done
done

log "rune: ${BIN[rune]}"
log "runc: ${BIN[runc]} ($("${BIN[runc]}" --version | head -n1))"
log "$ROUNDS rounds per side and row, interleaved ($ORDER), after $WARMUP warm-up rounds"

for row in "${selected[@]}"; do
    if [ -z "${SLUG[$row]}" ]; then
        SLUG[$row]="${row// /_}"
        failed=1
        log "FAILED: $row"
        continue
    fi
    read -r -a row_sides <<<"$(sides "$row")"
    ok=1
    for ((i = 1; i <= WARMUP && ok; i++)); do
        for side in "${row_sides[@]}"; do
            one_round "$side" "$row" "w$i" || { ok=0; break; }
        done
    done
    for ((i = 1; i <= ROUNDS && ok; i++)); do
        order=("${row_sides[@]}")
        [ "$ORDER" = abba ] && ((i % 2 == 0)) && [ "${#order[@]}" = 2 ] && order=(b a)
        for side in "${order[@]}"; do
            if one_round "$side" "$row" "$i"; then
                echo "$ELAPSED" >>"$WORK/results/${SLUG[$row]}.$side"
            else
                ok=0
                break
            fi
        done
    done
    if [ "$ok" = 1 ]; then
        log "done: $row"
    else
        failed=1
        rm -f "$WORK/results/${SLUG[$row]}".*
        log "FAILED: $row"
    fi
done

# The containerd rows: a script of their own (a private containerd, its node set-up and its
# clean-up); it writes its rows to a file printed below with these.
if [ "${#ctrd_selected[@]}" -gt 0 ]; then
    log "containerd rows: ${ctrd_selected[*]} (bench/containerd.sh)"
    if ! CTRD_SECTIONS="$(IFS=,; echo "${ctrd_selected[*]}")" CTRD_BENCH_OUT="$WORK/results/containerd.rows" \
        ROUNDS="$ROUNDS" WARMUP="$WARMUP" SKIP_DEPS=1 bash "$RUNE_REPO/bench/containerd.sh"; then
        failed=1
        log "FAILED: containerd rows"
    fi
fi

echo
echo "medians of wall time, $ROUNDS rounds per side; a/b = ratio; the last column says what a and b are"
printf '%-30s %12s %12s %8s   %s\n' "row" "a ms (med)" "b ms (med)" "a/b" "a | b"
lines=()
for row in "${selected[@]}"; do
    slug="${SLUG[$row]}"
    if [ "${ROW_KIND[$row]}" = single ]; then
        if [ -s "$WORK/results/$slug.a" ]; then a="$(median_ms <"$WORK/results/$slug.a")"; else a=FAIL; fi
        b=- r=-
    elif [ -s "$WORK/results/$slug.a" ] && [ -s "$WORK/results/$slug.b" ]; then
        a="$(median_ms <"$WORK/results/$slug.a")"
        b="$(median_ms <"$WORK/results/$slug.b")"
        r="$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
    else
        a=FAIL b=FAIL r=FAIL
    fi
    printf '%-30s %12s %12s %8s   %s | %s\n' "$row" "$a" "$b" "$r" "${ROW_A[$row]}" "${ROW_B[$row]}"
    lines+=("BENCH $slug $a $b $r")
done
if [ -s "$WORK/results/containerd.rows" ]; then
    while IFS=$'\t' read -r row a b r what_a what_b; do
        printf '%-30s %12s %12s %8s   %s | %s\n' "$row" "$a" "$b" "$r" "$what_a" "$what_b"
        lines+=("BENCH $row $a $b $r")
    done <"$WORK/results/containerd.rows"
fi
echo
printf '%s\n' "${lines[@]}"
exit "$failed"
