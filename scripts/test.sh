#!/usr/bin/env bash
# Runs Corral's whole test suite: formatting, lints, unit, integration and end-to-end tests
# (the end-to-end tests start real containerd, runc and CNI plugins, so run this as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
export RUST_BACKTRACE=1
cargo nextest --version >/dev/null 2>&1 && runner=(cargo nextest run --workspace --no-fail-fast) || runner=(cargo test --workspace --no-fail-fast)
"${runner[@]}"
