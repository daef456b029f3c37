#!/usr/bin/env bash
# shellcheck disable=SC2317 # traps and section functions are called indirectly
# Benchmark containerd-shim-rune-v2 (io.containerd.rune.v2) against Debian's
# containerd-shim-runc-v2 (io.containerd.runc.v2) through a private containerd 1.6
# (scripts/lib/containerd.sh: own root, state, socket and mount namespace; the host's containerd
# is never used). bench/run.sh runs it after its own rows; it also runs alone. Sections:
#
#   shim-memory  CTRD_SHIMS (default 10) long-running busybox containers per shim, started with
#                `ctr run -d`, all running at once; then the resident memory of the shim
#                processes per container: RSS (VmRSS of /proc/PID/status) and PSS (Pss of
#                /proc/PID/smaps_rollup: shared pages divided among the processes mapping
#                them, so N shims of one binary share their code). Rows shim-rss-kib and
#                shim-pss-kib (KiB per container, not ms). Measured 2 s after the last request
#                (`ctr tasks ls`), when an idle rune shim has released its code pages (trim.rs).
#   run-rm       CTRD_RUNS `ctr run --rm` of busybox `true`, sequential, rune's shim and runc's
#                interleaved (a, b, a, b, ...): each is create, start, wait, delete of the task
#                and removal of the container and its snapshot. The row is the mean per
#                container (the total / CTRD_RUNS); the table also shows totals and medians.
#   carrier      RUNE_CARRIER=software on rune's shim, ROUNDS rounds (at most CARRIER_ROUNDS),
#                each with an empty conversion cache: the first container (conversion and
#                signing), a second one from the same image (cache hit), and a plain container
#                (no carrier). Rows: first vs plain, cached vs plain; and the conversion time
#                the shim itself logs.
#
# The node set-up the software carrier needs (the provider's signing key, a signer policy
# admitting it, the PAL's report key, the PAL in a PAL directory, the shim's config) lives in
# the work directory and reaches the shims through containerd's environment, like the pinned
# copies of the binaries under test (the shim finds rune and rune-enclave beside itself).
#
# Output: a table and, per row, `BENCH <row> <a> <b> <ratio a/b>` as bench/run.sh prints them;
# with CTRD_BENCH_OUT=FILE the rows are written to FILE instead (one per line: row, a, b, ratio,
# what a is, what b is; tab-separated) for bench/run.sh to print in its table. Nothing is
# asserted about the numbers. Exit status: 0 unless a section failed.
#
# Environment (also: ROUNDS, WARMUP, SKIP_DEPS, KEEP_WORKDIR as in bench/run.sh):
#   RUNE_BIN_DIR=dir  where rune, containerd-shim-rune-v2, rune-enclave and
#                     libliberpal_software.so are (default: the release build's directory)
#   CTRD_SECTIONS=a,b sections to run (default: shim-memory,run-rm,carrier)
#   CTRD_SHIMS=N      containers per shim for shim-memory (default 10)
#   CTRD_RUNS=N       containers per shim for run-rm (default 100; with ROUNDS below 30,
#                     100*ROUNDS/30, at least 1)
#   CARRIER_ROUNDS=N  upper bound of the carrier section's rounds (default 10)
set -uo pipefail
export LC_ALL=C
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
# shellcheck source=scripts/lib/image.sh
. "$RUNE_REPO/scripts/lib/image.sh"
# shellcheck source=scripts/lib/containerd.sh
. "$RUNE_REPO/scripts/lib/containerd.sh"

RUNE_RT=io.containerd.rune.v2
RUNC_RT=io.containerd.runc.v2
IMAGE=docker.io/library/busybox:rune-bench

# ---------------------------------------------------------------------------------------
# Helpers

# Result rows: row, a, b, ratio, what a is, what b is.
ROWS=()
add_row() { ROWS+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s' "$@")"); }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }

usec() { local t="${1/./}"; printf '%s\n' "$((10#$t))"; }

# stats FILE: "median mean total" in ms of the microsecond values in FILE.
stats() {
    sort -n "$1" | awk '{ v[NR] = $1; s += $1 } END {
        if (NR == 0) { print "n/a n/a n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f %.2f %.1f\n", m / 1000, s / NR / 1000, s / 1000 }'
}

# ctr against the private containerd; FIFOs of the container's stdio in the daemon's work
# directory, which the shims (in the daemon's mount namespace) see at the same path.
cctr() { ctrd_ctr "$@" </dev/null >>"$LOG" 2>&1; }

# run_rm RUNTIME ID [ctr run options] -- CMD...: a foreground `ctr run --rm`; sets ELAPSED (us).
run_rm() {
    local rt="$1" id="$2" t0 t1 rc opts=()
    shift 2
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    printf -- '--- %s %s\n' "$rt" "$id" >>"$LOG"
    t0=$EPOCHREALTIME
    cctr run --rm --fifo-dir "$CTRD_DIR/fifo" --runtime "$rt" "${opts[@]}" "$IMAGE" "$id" "$@"
    rc=$?
    t1=$EPOCHREALTIME
    ELAPSED=$(($(usec "$t1") - $(usec "$t0")))
    if [ "$rc" -ne 0 ]; then
        warn "ctr run --rm --runtime $rt ... $id $* failed with status $rc (log: $LOG)"
        tail -n 5 "$LOG" >&2
        # leave nothing behind for the next round
        cctr tasks kill -s SIGKILL "$id"
        cctr tasks delete -f "$id"
        cctr containers delete "$id"
    fi
    return "$rc"
}

# shim_pids EXE_NAME: pids of the shim servers of this containerd named EXE_NAME (the
# processes whose command line names its socket; the short-lived `start` invocations are
# gone once the tasks run).
shim_pids() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
        case "$cmd" in *"$1"*"$CTRD_SOCK"*) printf '%s\n' "${p#/proc/}" ;; esac
    done
}

# task_status ID: the STATUS column of `ctr tasks ls` for ID.
task_status() { ctrd_ctr tasks ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }

# ---------------------------------------------------------------------------------------
# Section shim-memory

# mem_of PIDS...: "rss_kib pss_kib uss_kib anon_kib threads" summed over the processes.
mem_of() {
    local p rss=0 pss=0 uss=0 anon=0 thr=0 k v _
    for p in "$@"; do
        while read -r k v _; do
            case "$k" in
            VmRSS:) rss=$((rss + v)) ;;
            RssAnon:) anon=$((anon + v)) ;;
            Threads:) thr=$((thr + v)) ;;
            esac
        done <"/proc/$p/status"
        if [ -r "/proc/$p/smaps_rollup" ]; then
            while read -r k v _; do
                case "$k" in
                Pss:) pss=$((pss + v)) ;;
                Private_Clean: | Private_Dirty:) uss=$((uss + v)) ;;
                esac
            done <"/proc/$p/smaps_rollup"
        else
            pss=- uss=-
        fi
    done
    echo "$rss $pss $uss $anon $thr"
}

section_shim_memory() {
    local n="$CTRD_SHIMS" rt label i id pids ok=1 st
    declare -A rss pss uss anon thr
    for rt in "$RUNE_RT" "$RUNC_RT"; do
        label="${rt#io.containerd.}"
        label="${label%.v2}"
        log "shim-memory: $n containers on $rt (ctr run -d busybox sleep)"
        for ((i = 1; i <= n; i++)); do
            id="mem-$label-$i"
            # stdio as CRI gives it: FIFOs (nobody reads them once ctr has gone).
            if ! cctr run -d --fifo-dir "$CTRD_DIR/fifo" --runtime "$rt" "$IMAGE" "$id" \
                sleep 1000000; then
                warn "ctr run -d --runtime $rt ... $id failed (log: $LOG)"
                tail -n 5 "$LOG" >&2
                ok=0
                break 2
            fi
        done
        for ((i = 1; i <= n; i++)); do
            for _ in $(seq 1 100); do
                st="$(task_status "mem-$label-$i")"
                [ "$st" = RUNNING ] && break
                sleep 0.1
            done
            [ "$st" = RUNNING ] || {
                warn "task mem-$label-$i is ${st:-missing}, not RUNNING"
                ok=0
                break 2
            }
        done
    done
    if [ "$ok" = 1 ]; then
        sleep 2 # let the shims settle (lazy allocations, the first stats)
        for label in rune runc; do
            mapfile -t pids < <(shim_pids "containerd-shim-$label-v2")
            if [ "${#pids[@]}" -ne "$n" ]; then
                warn "shim-memory: $label: ${#pids[@]} shim processes for $n containers"
            fi
            read -r rss[$label] pss[$label] uss[$label] anon[$label] thr[$label] < <(mem_of "${pids[@]}")
            log "shim-memory: $label: ${#pids[@]} shims: RSS ${rss[$label]} KiB, PSS ${pss[$label]} KiB, USS ${uss[$label]} KiB, anonymous ${anon[$label]} KiB, ${thr[$label]} threads (total)"
            {
                echo "--- $label shim: /proc/${pids[0]}/status and smaps_rollup"
                grep -E '^(Vm|Rss|Threads)' "/proc/${pids[0]}/status"
                cat "/proc/${pids[0]}/smaps_rollup" 2>/dev/null
            } >>"$LOG"
            # The whole map of one shim, to see where its resident set lives (KEEP_WORKDIR=1).
            cat "/proc/${pids[0]}/smaps" >"$WORK/results/smaps.$label" 2>/dev/null
        done
    fi
    for rt in rune runc; do
        for ((i = 1; i <= n; i++)); do
            cctr tasks kill -s SIGKILL "mem-$rt-$i"
        done
    done
    for rt in rune runc; do
        for ((i = 1; i <= n; i++)); do
            id="mem-$rt-$i"
            for _ in $(seq 1 50); do
                st="$(task_status "$id")"
                [ "$st" = RUNNING ] || break
                sleep 0.1
            done
            cctr tasks delete -f "$id"
            cctr containers delete "$id"
        done
    done
    [ "$ok" = 1 ] || return 1
    per() { awk -v v="$1" -v n="$n" 'BEGIN { if (v == "-") print "-"; else printf "%.0f", v / n }'; }
    add_row shim-rss-kib "$(per "${rss[rune]}")" "$(per "${rss[runc]}")" \
        "$(ratio "$(per "${rss[rune]}")" "$(per "${rss[runc]}")")" \
        "rune shim, RSS KiB per container ($n containers, ${thr[rune]} threads)" \
        "runc shim, RSS KiB per container (${thr[runc]} threads)"
    add_row shim-pss-kib "$(per "${pss[rune]}")" "$(per "${pss[runc]}")" \
        "$(ratio "$(per "${pss[rune]}")" "$(per "${pss[runc]}")")" \
        "rune shim, PSS KiB per container (smaps_rollup; USS $(per "${uss[rune]}"))" \
        "runc shim, PSS KiB per container (USS $(per "${uss[runc]}"))"
}

# ---------------------------------------------------------------------------------------
# Section run-rm

section_run_rm() {
    local n="$CTRD_RUNS" i rt label ok=1 a b
    local out="$WORK/results"
    : >"$out/run-rm.rune"
    : >"$out/run-rm.runc"
    log "run-rm: $WARMUP warm-up, then $n ctr run --rm busybox true per shim, interleaved"
    for ((i = 1; i <= WARMUP; i++)); do
        for rt in "$RUNE_RT" "$RUNC_RT"; do
            run_rm "$rt" "warm-$i" -- true || return 1
        done
    done
    for ((i = 1; i <= n && ok; i++)); do
        for rt in "$RUNE_RT" "$RUNC_RT"; do
            label="${rt#io.containerd.}"
            label="${label%.v2}"
            if run_rm "$rt" "rm-$label-$i" -- true; then
                echo "$ELAPSED" >>"$out/run-rm.$label"
            else
                ok=0
                break
            fi
        done
    done
    [ "$ok" = 1 ] || return 1
    read -r a_med a_mean a_tot < <(stats "$out/run-rm.rune")
    read -r b_med b_mean b_tot < <(stats "$out/run-rm.runc")
    log "run-rm: rune shim: total $a_tot ms, mean $a_mean ms, median $a_med ms; runc shim: total $b_tot ms, mean $b_mean ms, median $b_med ms"
    add_row "ctr-run-rm-true-x$n" "$a_mean" "$b_mean" "$(ratio "$a_mean" "$b_mean")" \
        "rune shim: ms per container, mean (total $a_tot ms, median $a_med)" \
        "runc shim (total $b_tot ms, median $b_med)"
}

# ---------------------------------------------------------------------------------------
# Section carrier

# node_config CACHE_DIR: the shim's config (read at every Create) with that cache directory.
node_config() {
    cat >"$NODE/config.toml.new" <<TOML
[enclave_runtime]
signature_method = "server"
signing_key = "$NODE/signing-key.pem"
cache_dir = "$1"

[enclave_runtime.software]
enclave_runtime_path = "$NODE/pal/liberpal-software.so"
TOML
    mv "$NODE/config.toml.new" "$NODE/config.toml"
}

section_carrier() {
    local n="$CARRIER_ROUNDS" i ok=1 out="$WORK/results" kind
    ((ROUNDS < n)) && n="$ROUNDS"
    for kind in first cached plain; do : >"$out/carrier.$kind"; done
    log "carrier: $n rounds of: RUNE_CARRIER=software first (fresh cache), again (cached), plain"
    for ((i = 0; i <= n && ok; i++)); do # round 0 is a warm-up
        node_config "$NODE/cache/$i"
        run_rm "$RUNE_RT" "sw-first-$i" --env RUNE_CARRIER=software -- true || {
            ok=0
            break
        }
        ((i == 0)) || echo "$ELAPSED" >>"$out/carrier.first"
        run_rm "$RUNE_RT" "sw-cached-$i" --env RUNE_CARRIER=software -- true || {
            ok=0
            break
        }
        ((i == 0)) || echo "$ELAPSED" >>"$out/carrier.cached"
        run_rm "$RUNE_RT" "sw-plain-$i" -- true || {
            ok=0
            break
        }
        ((i == 0)) || echo "$ELAPSED" >>"$out/carrier.plain"
        rm -rf "$NODE/cache/$i"
    done
    [ "$ok" = 1 ] || return 1
    # What the shim itself logs for the carrier step of each Create (all rounds but 0).
    grep -oE 'container sw-first-[1-9][0-9]*: carrier software converted and signed the image in [0-9]+ ms' \
        "$CTRD_DIR/containerd.log" | awk '{ print $(NF - 1) * 1000 }' >"$out/carrier.shim-convert"
    grep -oE 'container sw-cached-[1-9][0-9]*: carrier software restored a cached conversion in [0-9]+ ms' \
        "$CTRD_DIR/containerd.log" | awk '{ print $(NF - 1) * 1000 }' >"$out/carrier.shim-cached"
    local f c p sc sh
    f="$(stats "$out/carrier.first" | cut -d' ' -f1)"
    c="$(stats "$out/carrier.cached" | cut -d' ' -f1)"
    p="$(stats "$out/carrier.plain" | cut -d' ' -f1)"
    sc="$(stats "$out/carrier.shim-convert" | cut -d' ' -f1)"
    sh="$(stats "$out/carrier.shim-cached" | cut -d' ' -f1)"
    log "carrier: medians: first $f ms, cached $c ms, plain $p ms; the shim's carrier step: converting $sc ms, from the cache $sh ms ($(wc -l <"$out/carrier.shim-convert") and $(wc -l <"$out/carrier.shim-cached") log lines)"
    add_row carrier-software-first "$f" "$p" "$(ratio "$f" "$p")" \
        "ctr run --rm, RUNE_CARRIER=software, empty cache (shim's carrier step: $sc ms)" \
        "plain container, rune shim"
    add_row carrier-software-cached "$c" "$p" "$(ratio "$c" "$p")" \
        "the same, cache hit (shim's carrier step: $sh ms)" "plain container, rune shim"
}

# node_setup: the software carrier's node, private to this run.
node_setup() {
    NODE="$WORK/node"
    mkdir -p "$NODE/pal" "$NODE/cache" && chmod 0700 "$NODE" || return 1
    install -m 0755 "$BIN_DIR/libliberpal_software.so" "$NODE/pal/liberpal-software.so" || return 1
    local signer
    signer="$("$WORK/bin/rune-enclave" keygen --out "$NODE/signing-key.pem" 2>>"$LOG" | tail -n 1)"
    [ -n "$signer" ] || return 1
    printf 'allowed_signers = ["%s"]\nallow_debug = false\n' "$signer" >"$NODE/policy.toml"
    head -c 32 /dev/urandom >"$NODE/report.key" && chmod 0600 "$NODE/report.key" || return 1
    node_config "$NODE/cache/none"
}

# ---------------------------------------------------------------------------------------
# Main

require_root "the containerd benchmark"
[ "${SKIP_DEPS:-0}" = 1 ] || "$RUNE_REPO/scripts/install-deps.sh" || exit 1
ROUNDS="${ROUNDS:-30}"
WARMUP="${WARMUP:-2}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer"
CTRD_SHIMS="${CTRD_SHIMS:-10}"
if [ -z "${CTRD_RUNS:-}" ]; then
    CTRD_RUNS=100
    ((ROUNDS < 30)) && CTRD_RUNS=$((100 * ROUNDS / 30)) && ((CTRD_RUNS < 1)) && CTRD_RUNS=1
fi
CARRIER_ROUNDS="${CARRIER_ROUNDS:-10}"
for v in CTRD_SHIMS CTRD_RUNS CARRIER_ROUNDS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
IFS=, read -r -a SECTIONS <<<"${CTRD_SECTIONS:-shim-memory,run-rm,carrier}"
for s in "${SECTIONS[@]}"; do
    case "$s" in shim-memory | run-rm | carrier) ;; *) die "unknown section \"$s\" (shim-memory, run-rm, carrier)" ;; esac
done

BIN_DIR="${RUNE_BIN_DIR:-$(dirname "$(rune_release_bin)")}"
for f in rune containerd-shim-rune-v2 rune-enclave libliberpal_software.so; do
    [ -f "$BIN_DIR/$f" ] || die "no $BIN_DIR/$f: run 'make bench' (or cargo build --release -p rune -p shim-rune -p rune-enclave -p liberpal-software)"
done
command -v containerd-shim-runc-v2 >/dev/null || die "containerd-shim-runc-v2 is missing (Debian's containerd)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rune-bench-ctrd.XXXXXX")"
LOG="$WORK/bench.log"
CTRD_NS="bench-$$"
finish() {
    containerd_stop
    if [ "${KEEP_WORKDIR:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK"/{bin,results}

# Pinned copies of the binaries under test (the target dir may be rebuilt meanwhile): the shim
# finds rune and rune-enclave beside itself; containerd finds the shims on its PATH.
for f in rune containerd-shim-rune-v2 rune-enclave; do
    install -m 0755 "$BIN_DIR/$f" "$WORK/bin/$f" || die "cannot copy $BIN_DIR/$f"
done
node_setup || die "node set-up failed (log: $LOG)"
log "building the busybox image"
archive="$(image_build_busybox_archive "$WORK/image" "$IMAGE" 2>>"$LOG")" || die "image build failed (log: $LOG)"

# containerd hands its environment to the shims, and they to rune.
export PATH="$WORK/bin:$PATH"
export RUNE_SHIM_CONFIG="$NODE/config.toml"
export RUNE_PAL_DIRS="$NODE/pal"
export RUNE_SOFTWARE_ENCLAVE_POLICY="$NODE/policy.toml"
export RUNE_SOFTWARE_ENCLAVE_REPORT_KEY="$NODE/report.key"
containerd_start "$WORK/containerd"
ctrd_ctr images import "$archive" >>"$LOG" 2>&1 || die "ctr images import failed (log: $LOG)"
log "containerd $(containerd --version | awk '{ print $3 }'); runc shim: $(command -v containerd-shim-runc-v2)"

failed=0
for s in "${SECTIONS[@]}"; do
    fn="section_${s//-/_}"
    if "$fn"; then
        log "done: $s"
    else
        failed=1
        log "FAILED: $s (log: $LOG)"
        add_row "$s" FAIL FAIL FAIL - -
    fi
done

if [ -n "${CTRD_BENCH_OUT:-}" ]; then
    printf '%s\n' "${ROWS[@]}" >"$CTRD_BENCH_OUT"
else
    echo
    echo "containerd: rune's shim vs runc's (a/b = ratio; KiB rows are memory, the others ms)"
    printf '%-30s %12s %12s %8s   %s\n' "row" "a" "b" "a/b" "a | b"
    for r in "${ROWS[@]}"; do
        IFS=$'\t' read -r name a b q wa wb <<<"$r"
        printf '%-30s %12s %12s %8s   %s | %s\n' "$name" "$a" "$b" "$q" "$wa" "$wb"
    done
    echo
    for r in "${ROWS[@]}"; do
        IFS=$'\t' read -r name a b q _ <<<"$r"
        echo "BENCH $name $a $b $q"
    done
fi
exit "$failed"
