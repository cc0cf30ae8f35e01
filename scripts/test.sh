#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test with and without the mpi feature.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
# The release builds the suite makes (the Python package, the simulated cluster's and Slurm's
# binary) test behaviour, not speed: without LTO and with parallel code generation they build
# in half the time. A release build outside this script keeps the tuned profile.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

# The Python package's virtual environment (packages from PyPI) is made while the Rust side
# builds: it mostly waits on the network.
mkdir -p target/ci
scripts/test-python.sh venv > target/ci/py-venv.log 2>&1 &
py_venv=$!

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
# The cluster tests run the command `cargo test` just built with MPI (a copy of
# target/debug/nnmpi, which the build without MPI below replaces): their networks are small,
# and a release build of their own took 3 of the suite's minutes. They spend most of their
# time waiting (for a cut link to be noticed, a stall timeout), so they run while the build
# without MPI compiles, at a lower priority than theirs.
mkdir -p target/ci/mpi
# Named nnmpi still: the cluster test finds its ranks by the command name.
cp target/debug/nnmpi target/ci/mpi/nnmpi
(
    export NNMPI_BIN="$PWD/target/ci/mpi/nnmpi"
    echo "[test] a simulated cluster of 4 hosts (network namespaces; skipped without root): scripts/sim-cluster.sh test"
    scripts/sim-cluster.sh test
    echo "[test] a one-node Slurm (installs slurm-wlm and munge; skipped without root): scripts/slurm-test.sh"
    scripts/slurm-test.sh
) > target/ci/cluster.log 2>&1 &
cluster=$!
echo "[test] cargo test --no-default-features --features cli (single process, threads only)"
# What builds differently without MPI: the library, the command, and the tests that look
# at the launch (the other test files do not depend on the feature and ran above).
nompi_status=0
nice -n 10 cargo test --no-default-features --features cli --lib --bins --test cli --test preemption ||
    nompi_status=$?
cluster_status=0
wait $cluster || cluster_status=$?
cat target/ci/cluster.log
if [ $cluster_status -ne 0 ]; then
    echo "[test] the simulated cluster or Slurm tests failed (status $cluster_status; log above)" >&2
fi
if [ $nompi_status -ne 0 ] || [ $cluster_status -ne 0 ]; then
    exit 1
fi
echo "[test] the Python package (python/): build, install into a virtual environment, pytest"
venv_status=0
wait $py_venv || venv_status=$?
cat target/ci/py-venv.log
if [ $venv_status -ne 0 ]; then
    echo "[test] making the Python virtual environment failed (log above)" >&2
    exit 1
fi
scripts/test-python.sh
