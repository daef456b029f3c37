#!/usr/bin/env bash
# shellcheck disable=SC2317 # row functions and traps are called indirectly
# Benchmark rune against runc: both run the same bundles (a busybox root filesystem and a
# config made by `runc spec`, terminal off), interleaved round by round (rune, runc, rune,
# runc, ...), each round with a fresh --root directory. The wall time of whole commands is
# measured with bash's $EPOCHREALTIME (no fork around the timed commands). Prints a table
# of medians and one machine-readable line per row:
#     BENCH <row> <rune_ms> <runc_ms> <ratio rune/runc>
# Nothing is asserted about the times. Exit status: 0 unless a row failed.
#
# Environment:
#   RUNE=path     runtime measured as "rune" (default: target/release/rune; make bench builds it)
#   RUNC=path     runtime measured as "runc" (default: runc on PATH)
#   ROUNDS=N      timed rounds per runtime and row (default 30, at least 1)
#   WARMUP=N      untimed rounds per runtime before each row (default 2)
#   ORDER=alternate|abba  alternate: rune first in every round (rune, runc, rune, runc,
#                 ...); abba: runc first in even rounds, which cancels any advantage of
#                 going first or second (default alternate)
#   BENCH_ROWS=a,b  only the rows whose names are listed (default: all)
#   SKIP_DEPS=1   do not run scripts/install-deps.sh
#   KEEP_WORKDIR=1  keep the work directory (bundles, runtime logs)
#
# Adding a row: write a function row_<x>_timed (and, if needed, row_<x>_setup and
# row_<x>_teardown), then register it below with `bench_row "<name>" '<args JSON>' row_<x>`.
# Each function gets: RT (runtime binary), ROOT (its --root for this round), ID (container
# id), BUNDLE (the row's bundle directory), and may use the file $ROOT.pid; `rt ARGS...`
# runs "$RT" --root "$ROOT" ARGS with stdin from /dev/null and output appended to the
# round's log. Setup and teardown are not timed; teardown must leave no container behind
# (the default one force-deletes ID).
set -uo pipefail
export LC_ALL=C
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
# shellcheck source=scripts/lib/image.sh
. "$RUNE_REPO/scripts/lib/image.sh"

# ---------------------------------------------------------------------------------------
# Rows

ROW_NAMES=()
declare -A ROW_ARGS ROW_FN

# bench_row NAME ARGS_JSON PREFIX: a row named NAME whose container runs ARGS_JSON.
bench_row() {
    ROW_NAMES+=("$1")
    ROW_ARGS["$1"]="$2"
    ROW_FN["$1"]="$3"
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

bench_row "run true" '["true"]' row_run
bench_row "create+start+delete" '["true"]' row_csd
bench_row "exec true" '["sleep","1000"]' row_exec

# ---------------------------------------------------------------------------------------
# Machinery

RT="" ROOT="" ID="" BUNDLE="" RTLOG=/dev/null

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

# one_round LABEL BINARY ROW ROUND TIMED(0/1): prints elapsed microseconds of the timed part.
one_round() {
    local label="$1" row="$2" round="$3" fn="${ROW_FN[$2]}" t0 t1 rc
    RT="${BIN[$label]}"
    ROOT="$WORK/roots/$label-$round"
    ID="bench-$$-$round"
    BUNDLE="$WORK/bundles/${SLUG[$row]}"
    RTLOG="$WORK/logs/$label-${SLUG[$row]}.log"
    rm -rf "$ROOT" && mkdir -p "$ROOT"
    printf -- '--- %s round %s\n' "$row" "$round" >>"$RTLOG"
    if declare -F "${fn}_setup" >/dev/null && ! "${fn}_setup"; then
        warn "$label: setup of \"$row\" failed (log: $RTLOG)"
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
        warn "$label: \"$row\" failed with status $rc (log: $RTLOG)"
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
[ -x "${BIN[rune]}" ] || die "no rune binary (${RUNE:-$(rune_release_bin)}): run 'make bench' or set RUNE"
[ -x "${BIN[runc]}" ] || die "no runc binary (${RUNC:-runc}): set RUNC"
command -v jq >/dev/null || die "jq is missing"

selected=()
if [ -n "${BENCH_ROWS:-}" ]; then
    IFS=, read -r -a wanted <<<"$BENCH_ROWS"
    for w in "${wanted[@]}"; do
        [ -n "${ROW_FN[$w]+x}" ] || die "unknown row \"$w\" (rows: ${ROW_NAMES[*]})"
        selected+=("$w")
    done
else
    selected=("${ROW_NAMES[@]}")
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
for row in "${selected[@]}"; do
    slug="${row// /_}"
    SLUG[$row]="$slug"
    mkdir -p "$WORK/bundles/$slug"
    jq --arg root "$WORK/rootfs" --argjson args "${ROW_ARGS[$row]}" \
        '.process.args = $args | .process.terminal = false | .root.path = $root
         | .root.readonly = true | .hostname = "bench"' \
        "$WORK/spec.json" >"$WORK/bundles/$slug/config.json" || die "bad args for row \"$row\""
done

log "rune: ${BIN[rune]}"
log "runc: ${BIN[runc]} ($("${BIN[runc]}" --version | head -n1))"
log "$ROUNDS rounds per runtime and row, interleaved ($ORDER), after $WARMUP warm-up rounds"

failed=0
for row in "${selected[@]}"; do
    ok=1
    for ((i = 1; i <= WARMUP && ok; i++)); do
        for label in rune runc; do
            one_round "$label" "$row" "w$i" || { ok=0; break; }
        done
    done
    for ((i = 1; i <= ROUNDS && ok; i++)); do
        order=(rune runc)
        [ "$ORDER" = abba ] && ((i % 2 == 0)) && order=(runc rune)
        for label in "${order[@]}"; do
            if one_round "$label" "$row" "$i"; then
                echo "$ELAPSED" >>"$WORK/results/${SLUG[$row]}.$label"
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

printf '\n%-24s %14s %14s %12s\n' "row ($ROUNDS rounds)" "rune ms (med)" "runc ms (med)" "rune/runc"
lines=()
for row in "${selected[@]}"; do
    slug="${SLUG[$row]}"
    if [ -s "$WORK/results/$slug.rune" ] && [ -s "$WORK/results/$slug.runc" ]; then
        a="$(median_ms <"$WORK/results/$slug.rune")"
        b="$(median_ms <"$WORK/results/$slug.runc")"
        r="$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')"
    else
        a=FAIL b=FAIL r=FAIL
    fi
    printf '%-24s %14s %14s %12s\n' "$row" "$a" "$b" "$r"
    lines+=("BENCH $slug $a $b $r")
done
echo
printf '%s\n' "${lines[@]}"
exit "$failed"
