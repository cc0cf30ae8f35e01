#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test with and without the mpi feature.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
# The release builds the suite makes (the Python package, the simulated cluster's and Slurm's
# binary) test behaviour, not speed: without LTO and with parallel code generation they build
# in half the time. A release build outside this script keeps the tuned profile.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --no-default-features --features cli -- -D warnings
echo "[test] the library alone: no command-line dependencies, builds and lints clean"
if cargo tree -e normal --no-default-features | grep -E "^.*(clap|indicatif|anyhow|plotters) v"; then
    echo "the library (--no-default-features) depends on a command-line crate" >&2
    exit 1
fi
cargo clippy --all-targets --no-default-features -- -D warnings
echo "[test] cargo test (default features: mpi, cli)"
cargo test
# The cluster tests run the command `cargo test` just built with MPI (target/debug/nnmpi,
# before the build without MPI below replaces it): their networks are small, and a release
# build of their own took 3 of the suite's minutes.
export NNMPI_BIN="$PWD/target/debug/nnmpi"
echo "[test] a simulated cluster of 4 hosts (network namespaces; skipped without root): scripts/sim-cluster.sh test"
scripts/sim-cluster.sh test
echo "[test] a one-node Slurm (installs slurm-wlm and munge; skipped without root): scripts/slurm-test.sh"
scripts/slurm-test.sh
unset NNMPI_BIN
echo "[test] cargo test --no-default-features --features cli (single process, threads only)"
# What builds differently without MPI: the library, the command, and the tests that look
# at the launch (the other test files do not depend on the feature and ran above).
cargo test --no-default-features --features cli --lib --bins --test cli --test preemption
echo "[test] the Python package (python/): build, install into a virtual environment, pytest"
scripts/test-python.sh
