#!/usr/bin/env bash
# `make test`: every check and test, as CI runs them. Installs what is missing first.
#   fmt, clippy (warnings are errors), build, then cargo test for the whole workspace.
# Runs as root: the integration tests create real containers (and start private daemons).
# Environment: SKIP_DEPS=1 skips scripts/install-deps.sh; RUST_TEST_THREADS=N (read by the
# test harness) limits parallel tests. Extra arguments go to `cargo test` as they are.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

require_root "make test"
[ "${SKIP_DEPS:-0}" = 1 ] || "$RUNE_REPO/scripts/install-deps.sh"
ensure_cargo
cd "$RUNE_REPO"

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --all -- --check"
fmt_color=()
[ -t 1 ] || fmt_color=(--color=never) # rustfmt colours its diff even into a log file
cargo fmt --all -- --check "${fmt_color[@]}"

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace"
cargo build --workspace

# --no-fail-fast: run every test binary, so one failure does not hide the others.
step "cargo test --workspace --no-fail-fast $*"
cargo test --workspace --no-fail-fast "$@"

step "all checks and tests passed"
