#!/usr/bin/env bash
# Install, as root and only when missing, the Debian 12 packages that building, testing,
# the demo and the benchmark need. Idempotent: when everything is present it changes nothing
# and does not touch the network. Never starts the host's docker or containerd services
# (the tests and the demo start private daemons of their own).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PACKAGES=(
    # build: gcc links the binary; libseccomp-dev for libcontainer's seccomp feature
    # (linked through libseccomp-sys); pkg-config and protobuf-compiler for -sys and
    # protocol crates; libsystemd-dev is not needed by libcontainer's systemd feature
    # (it speaks D-Bus itself) but is small and kept for components to come.
    gcc libc6-dev make pkg-config libseccomp-dev protobuf-compiler libsystemd-dev
    # runtimes and engines the tests, demo and benchmark compare with or drive
    runc containerd docker.io
    # images: a static busybox for root filesystems, umoci and skopeo to build OCI images,
    # debootstrap for a Debian rootfs with python3 (a dynamically linked enclave workload)
    busybox-static umoci skopeo debootstrap
    # tools used by the scripts and tests; openssl signs enclave images in two-step tests
    jq util-linux iproute2 openssl
)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    require_root "installing ${missing[*]}"
    log "installing missing packages: ${missing[*]}"

    # Keep maintainer scripts from starting services (docker.io and containerd would):
    # invoke-rc.d and deb-systemd-invoke both ask /usr/sbin/policy-rc.d, and 101 means
    # "action forbidden". An existing policy is set aside and put back afterwards.
    policy=/usr/sbin/policy-rc.d
    backup="$policy.rune-install-deps"
    [ -e "$policy" ] && mv -f "$policy" "$backup"
    restore_policy() {
        rm -f "$policy"
        if [ -e "$backup" ]; then mv -f "$backup" "$policy"; fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"

    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt_opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    apt-get update -q
    apt-get install "${apt_opts[@]}" "${missing[@]}"

    restore_policy
    trap - EXIT

    for pkg in "${missing[@]}"; do
        installed "$pkg" || die "package $pkg is still not installed"
    done
else
    log "all system packages present"
fi

# Rust: the toolchain comes from rustup (the machine's), never from apt.
ensure_cargo
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing from the Rust toolchain (rustup component add rustfmt)"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing from the Rust toolchain (rustup component add clippy)"
log "toolchain: $(cargo --version)"
