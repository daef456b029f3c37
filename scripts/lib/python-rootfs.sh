#!/usr/bin/env bash
# shellcheck shell=bash
# A Debian 12 (bookworm) root filesystem with Python, for the software enclave tests and
# benchmarks: `debootstrap --variant=minbase` plus python3-minimal (a dynamically linked glibc
# program with its standard library), built once into a cache directory and reused.
#
#   scripts/lib/python-rootfs.sh [DIR]      build DIR if it is not there yet; print its path
#   . scripts/lib/python-rootfs.sh          (after common.sh) defines python_rootfs [DIR]
#
# DIR defaults to $PYTHON_ROOTFS, else <cargo target dir>/test-cache/python-rootfs. The
# build is atomic: debootstrap works in a temporary directory beside DIR, which is renamed
# into place only when complete, under a lock (DIR.lock), so concurrent callers build it once
# and never see half a rootfs. /dev is left empty (runtimes mount their own) and apt's
# downloaded packages and lists are removed. Needs root and the network (DEBIAN_MIRROR,
# default http://deb.debian.org/debian) the first time.
#
# Exit status: 0 with the path on stdout; 3 when debootstrap is not installed (callers may
# skip: `apt-get install debootstrap`, which scripts/install-deps.sh should install); 1 on any
# other failure.

PYTHON_ROOTFS_SUITE=bookworm
PYTHON_ROOTFS_PACKAGES=python3-minimal
# Bump when the content changes, so stale caches are rebuilt (the marker file records it).
PYTHON_ROOTFS_VERSION=1

_python_rootfs_default_dir() {
    local dir="${CARGO_TARGET_DIR:-$RUNE_REPO/target}"
    case "$dir" in /*) ;; *) dir="$RUNE_REPO/$dir" ;; esac
    printf '%s/test-cache/python-rootfs\n' "$dir"
}

_python_rootfs_marker() {
    printf 'rune python rootfs v%s: debootstrap --variant=minbase --include=%s %s\n' \
        "$PYTHON_ROOTFS_VERSION" "$PYTHON_ROOTFS_PACKAGES" "$PYTHON_ROOTFS_SUITE"
}

# python_rootfs [DIR]: make sure DIR holds the rootfs; print DIR. Returns 3 when debootstrap is
# missing, 1 on other failures (with a message on stderr).
python_rootfs() {
    local dir="${1:-${PYTHON_ROOTFS:-$(_python_rootfs_default_dir)}}"
    local marker=.rune-python-rootfs mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    local tmp
    case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
    if [ "$(cat "$dir/$marker" 2>/dev/null)" = "$(_python_rootfs_marker)" ]; then
        printf '%s\n' "$dir"
        return 0
    fi
    if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
        warn "debootstrap is missing: apt-get install debootstrap (scripts/install-deps.sh should install it)"
        return 3
    fi
    [ "$(id -u)" -eq 0 ] || {
        warn "building $dir needs root (debootstrap)"
        return 1
    }
    mkdir -p "$(dirname "$dir")" || return 1
    (
        set -o pipefail
        exec 9>"$dir.lock" || exit 1
        flock 9 || exit 1
        # Somebody else may have built it while we waited for the lock.
        if [ "$(cat "$dir/$marker" 2>/dev/null)" = "$(_python_rootfs_marker)" ]; then exit 0; fi
        tmp="$(mktemp -d "$dir.tmp.XXXXXX")" || exit 1
        trap 'rm -rf "$tmp"' EXIT
        log "building $dir: debootstrap --variant=minbase --include=$PYTHON_ROOTFS_PACKAGES $PYTHON_ROOTFS_SUITE (a few minutes, once)"
        PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase \
            --include="$PYTHON_ROOTFS_PACKAGES" "$PYTHON_ROOTFS_SUITE" "$tmp" "$mirror" \
            >"$tmp.log" 2>&1 || {
            warn "debootstrap failed (log: $tmp.log):"
            tail -n 20 "$tmp.log" >&2
            exit 1
        }
        rm -f "$tmp.log"
        [ -x "$tmp/usr/bin/python3" ] || {
            warn "debootstrap produced no /usr/bin/python3"
            exit 1
        }
        # Runtimes mount their own /dev; device nodes would only get in the way of copies.
        find "$tmp/dev" -mindepth 1 -delete
        rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
        _python_rootfs_marker >"$tmp/$marker"
        # An older (or half-removed) version is moved aside first: rename(2) needs DIR absent.
        if [ -e "$dir" ]; then
            mv -T "$dir" "$tmp.old" && rm -rf "$tmp.old"
        fi
        mv -T "$tmp" "$dir" || exit 1
        trap - EXIT
        log "python rootfs ready: $dir ($(du -sh "$dir" | cut -f1))"
    ) || return 1
    printf '%s\n' "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    # shellcheck source=scripts/lib/common.sh
    . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
    python_rootfs "$@"
    exit $?
fi
