# shellcheck shell=bash
# Helpers shared by the scripts in scripts/ and bench/. Source it; it defines functions and
# RUNE_REPO (the repository root) and changes nothing else.

RUNE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export RUNE_REPO

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

require_root() {
    [ "$(id -u)" -eq 0 ] || die "${1:-this script} must run as root (containers need it)"
}

# Put cargo on PATH: rustup installs it in ~/.cargo/bin, which a non-login shell may lack.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        # shellcheck disable=SC1091
        [ -f "${CARGO_HOME:-$HOME/.cargo}/env" ] && . "${CARGO_HOME:-$HOME/.cargo}/env"
        [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "no Rust toolchain: cargo is neither on PATH nor in ~/.cargo/bin (install Rust with rustup first)"
    export PATH
}

# Path of the release binary built by `cargo build --release -p rune`.
rune_release_bin() {
    local dir="${CARGO_TARGET_DIR:-$RUNE_REPO/target}"
    case "$dir" in /*) ;; *) dir="$RUNE_REPO/$dir" ;; esac
    printf '%s/release/rune\n' "$dir"
}
