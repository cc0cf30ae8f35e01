#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test with and without the mpi feature.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh

echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --no-default-features -- -D warnings
echo "[test] cargo test (default features: mpi)"
cargo test
echo "[test] cargo test --no-default-features (single process, threads only)"
cargo test --no-default-features
