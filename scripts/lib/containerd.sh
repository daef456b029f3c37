# shellcheck shell=bash
# A private containerd: its own config, root, state, sockets and namespace, under one work
# directory, so the host's containerd (/run/containerd, /var/lib/containerd) is never used.
# It runs in a mount namespace of its own with a fresh tmpfs on /run, because containerd
# 1.6 and its shims keep a few paths there regardless of the config (/run/containerd/s for
# shim sockets, /run/containerd/runc for the runtime's state); its snapshot mounts stay in
# that namespace too and go away with it. It also runs in a session (and process group) of
# its own, so that a Ctrl-C or a signal to the caller's process group never reaches it or its
# shims: the caller's clients can still remove their pods and containers through it when
# interrupted, and the caller stops it last, with containerd_stop. Source it (after common.sh).
#
#   containerd_start WORKDIR [EXTRA_TOML]   start it; sets CTRD_DIR, CTRD_SOCK, CTRD_PID
#   ctrd_ctr ARGS...                        ctr against it (namespace $CTRD_NS)
#   containerd_stop                         kill its tasks, stop it, remove WORKDIR and the
#                                           cgroups of its containers
#
# CTRD_NS (default "rune") is the containerd namespace; it also names the parent cgroup of
# the containers (/CTRD_NS/<id>). With CTRD_CRI_SANDBOX_IMAGE set, the CRI plugin is enabled
# as a kubelet needs it here: that pause image, a runtime handler `rune`
# (io.containerd.rune.v2, as a RuntimeClass names it), host networking only (empty private
# CNI directories) and restrict_oom_score_adj (the daemon may lack CAP_SYS_RESOURCE); its
# pods live in namespace k8s.io, so set CTRD_NS=k8s.io too. CONTAINERD_SNAPSHOTTER (read by ctr) picks another
# snapshotter than overlayfs, e.g. "native" on file systems where overlayfs fails.

CTRD_NS="${CTRD_NS:-rune}"
CTRD_DIR=""
CTRD_SOCK=""
CTRD_PID=""
_CTRD_LAUNCHER=""     # our child: containerd itself, or setsid waiting for it
_CTRD_CG_PARENTS=()   # CTRD_NS parent cgroups that were there before containerd_start

ctrd_ctr() {
    ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" "$@"
}

containerd_start() {
    local dir="$1" extra="${2:-}"
    command -v containerd >/dev/null || die "containerd is not installed (scripts/install-deps.sh)"
    command -v unshare >/dev/null || die "unshare (util-linux) is not installed"
    mkdir -p "$dir"/{root,state,tmp,opt,fifo,cni/bin,cni/conf}
    CTRD_DIR="$(cd "$dir" && pwd)"
    CTRD_SOCK="$CTRD_DIR/containerd.sock"
    local plugins='disabled_plugins = ["io.containerd.grpc.v1.cri"]'
    if [ -n "${CTRD_CRI_SANDBOX_IMAGE:-}" ]; then
        plugins='disabled_plugins = []'
        extra="$extra
[plugins.\"io.containerd.grpc.v1.cri\"]
  sandbox_image = \"$CTRD_CRI_SANDBOX_IMAGE\"
  restrict_oom_score_adj = true
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\"
[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]
  runtime_type = \"io.containerd.runc.v2\"
[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.rune]
  runtime_type = \"io.containerd.rune.v2\"
[plugins.\"io.containerd.grpc.v1.cri\".cni]
  bin_dir = \"$CTRD_DIR/cni/bin\"
  conf_dir = \"$CTRD_DIR/cni/conf\"
"
    fi
    cat >"$CTRD_DIR/config.toml" <<TOML
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
temp = "$CTRD_DIR/tmp"
$plugins

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
$extra
TOML
    log "starting a private containerd in $CTRD_DIR"
    # The CTRD_NS parent cgroups already there belong to others (another containerd using the
    # same namespace): containerd_stop removes only the parents this run's containers made.
    _CTRD_CG_PARENTS=()
    local d
    for d in /sys/fs/cgroup/*/"$CTRD_NS" /sys/fs/cgroup/"$CTRD_NS"; do
        if [ -d "$d" ]; then _CTRD_CG_PARENTS+=("$d"); fi
    done
    # setsid: a session and process group of its own (no terminal signals; see above). It
    # execs unshare, which execs sh, which writes its pid and execs containerd; only a
    # process group leader (a caller with job control) makes setsid fork, and then -w keeps it
    # waiting for containerd, so that $! lives exactly as long as containerd in both cases.
    local pidfile="$CTRD_DIR/containerd.pid"
    rm -f "$pidfile"
    CTRD_PID=""
    # shellcheck disable=SC2016 # $1 and $2 are expanded by the inner sh
    setsid -w unshare --mount --propagation private -- sh -c \
        'echo $$ >"$2" && mount -t tmpfs -o mode=0755 rune-private-run /run && exec containerd --config "$1"' \
        sh "$CTRD_DIR/config.toml" "$pidfile" </dev/null >"$CTRD_DIR/containerd.log" 2>&1 &
    _CTRD_LAUNCHER=$!
    for _ in $(seq 1 100); do
        if [ -z "$CTRD_PID" ] && [ -s "$pidfile" ]; then
            CTRD_PID="$(cat "$pidfile")"
        fi
        if [ -n "$CTRD_PID" ] && [ -S "$CTRD_SOCK" ] && ctrd_ctr version >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$_CTRD_LAUNCHER" 2>/dev/null; then
            tail -n 20 "$CTRD_DIR/containerd.log" >&2 || true
            die "the private containerd exited at start (log: $CTRD_DIR/containerd.log)"
        fi
        sleep 0.1
    done
    tail -n 20 "$CTRD_DIR/containerd.log" >&2 || true
    die "the private containerd did not answer on $CTRD_SOCK within 10 s"
}

# Pids of shims started by this containerd (they name its socket in their command line).
_ctrd_shim_pids() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
        case "$cmd" in *containerd-shim*"$CTRD_SOCK"*) printf '%s\n' "${p#/proc/}" ;; esac
    done
}

# Pids of the processes of containerd's session (its pid is the session's id: setsid in
# containerd_start), zombies included: it, its shims and what they started, unless they made
# sessions of their own. The kernel reuses no pid that is still a session's id, so while any
# is listed, all are of this daemon.
_ctrd_session_pids() {
    local p st sid
    [ -n "$CTRD_PID" ] || return 0
    for p in /proc/[0-9]*; do
        { read -r st <"$p/stat"; } 2>/dev/null || continue
        st="${st##*) }" # after "pid (comm) ": state ppid pgrp session ...
        read -r _ _ _ sid _ <<<"$st"
        if [ "$sid" = "$CTRD_PID" ]; then printf '%s\n' "${p#/proc/}"; fi
    done
}

# _ctrd_ids: ids of the containers (pod sandboxes included) this containerd has or had
# bundles or CRI state for, from its own root and state directories. They name the cgroups
# of its containers; a daemon that died leaves them there.
_ctrd_ids() {
    local d
    [ -n "$CTRD_DIR" ] || return 0
    for d in "$CTRD_DIR/state/io.containerd.runtime.v2.task/$CTRD_NS"/* \
        "$CTRD_DIR"/{root,state}/io.containerd.grpc.v1.cri/{sandboxes,containers}/*; do
        if [ -d "$d" ]; then printf '%s\n' "${d##*/}"; fi
    done
}

# _ctrd_sweep_cgroups ID...: kill whatever is left in the cgroups of these containers
# (/CTRD_NS/ID in every hierarchy) and remove them, then the CTRD_NS parents if empty and
# not there before containerd_start. Nothing else: other daemons may use CTRD_NS too.
_ctrd_sweep_cgroups() {
    local id d p pid mine
    for id in "$@"; do
        case "$id" in "" | . | .. | */*) continue ;; esac
        for d in /sys/fs/cgroup/*/"$CTRD_NS/$id" /sys/fs/cgroup/"$CTRD_NS/$id"; do
            [ -d "$d" ] || continue
            while read -r pid; do
                if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
            done < <(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)
            # a killed process leaves its cgroup a moment later
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
                [ -d "$d" ] || break
                sleep 0.1
            done
        done
    done
    for d in /sys/fs/cgroup/*/"$CTRD_NS" /sys/fs/cgroup/"$CTRD_NS"; do
        [ -d "$d" ] || continue
        mine=1
        for p in "${_CTRD_CG_PARENTS[@]}"; do
            if [ "$p" = "$d" ]; then mine=0; fi
        done
        # rmdir removes only an empty cgroup (no children, no processes)
        if [ "$mine" = 1 ]; then rmdir "$d" 2>/dev/null || true; fi
    done
}

containerd_stop() {
    local id pid ids=()
    [ -n "$_CTRD_LAUNCHER" ] || return 0
    # stopped while starting: the pid sh wrote, or (not yet written) our child, which then is
    # the one that becomes containerd
    [ -n "$CTRD_PID" ] || CTRD_PID="$(cat "$CTRD_DIR/containerd.pid" 2>/dev/null || true)"
    [ -n "$CTRD_PID" ] || CTRD_PID="$_CTRD_LAUNCHER"
    if kill -0 "$CTRD_PID" 2>/dev/null; then
        mapfile -t ids < <(timeout 10 ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" containers ls -q 2>/dev/null)
        for id in $(timeout 10 ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" tasks ls -q 2>/dev/null); do
            timeout 10 ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
            timeout 10 ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" tasks delete --force "$id" >/dev/null 2>&1 || true
        done
        for id in "${ids[@]}"; do
            timeout 10 ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" containers delete "$id" >/dev/null 2>&1 || true
        done
        kill -TERM "$CTRD_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$CTRD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$CTRD_PID" 2>/dev/null; then kill -KILL "$CTRD_PID" 2>/dev/null || true; fi
    fi
    # containerd itself, or setsid waiting for it (a caller with job control): gone now
    wait "$_CTRD_LAUNCHER" 2>/dev/null || true
    # containers whose tasks outlived a dead containerd still have a bundle in the state dir,
    # and pods a dead containerd could not remove their CRI state
    mapfile -t -O "${#ids[@]}" ids < <(_ctrd_ids)
    for pid in $(_ctrd_shim_pids) $(_ctrd_session_pids); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    # until they are gone, zombies too: a shim whose parent (the `shim start` process) has
    # exited is reaped by init, which may take a moment
    for _ in $(seq 1 50); do
        [ -n "$(_ctrd_session_pids)" ] || break
        sleep 0.1
    done
    _ctrd_sweep_cgroups "${ids[@]}"
    if [ -n "$CTRD_DIR" ] && [ -d "$CTRD_DIR" ]; then
        rm -rf "$CTRD_DIR" 2>/dev/null || warn "could not remove all of $CTRD_DIR"
    fi
    CTRD_PID=""
    _CTRD_LAUNCHER=""
}
