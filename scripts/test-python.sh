#!/usr/bin/env bash
# The Python package: lints its Rust side, builds and installs it into a virtual environment
# (packages from PyPI), then runs its pytest suite against the nnmpi command that
# `cargo test` built (target/debug/nnmpi). Called by test.sh; runs alone too.
#
#   scripts/test-python.sh        the virtual environment (unless made), lints, build, pytest
#   scripts/test-python.sh venv   only the virtual environment (test.sh makes it meanwhile)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NNMPI_PY_ENV:-target/py-env}
# The extension's build shares nothing with the root package's (other features), so it has
# a target directory of its own, inside the ignored target/.
export CARGO_TARGET_DIR="$PWD/target/python"

# Written last by `venv`: the environment is complete.
ready="$venv/.nnmpi-test-env"
if [ ! -e "$ready" ]; then
    echo "[python] virtual environment $venv (maturin, numpy, pytest, scikit-learn, mpi4py from PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "maturin>=1.9,<2" numpy pytest scikit-learn mpi4py
    touch "$ready"
fi
if [ "${1:-}" = venv ]; then
    exit 0
fi
export PYO3_PYTHON="$PWD/$venv/bin/python"

echo "[python] cargo fmt --check and clippy of the extension"
cargo fmt --manifest-path python/Cargo.toml -- --check
cargo clippy --manifest-path python/Cargo.toml --all-targets -- -D warnings

echo "[python] pip install ./python"
"$venv/bin/pip" install -q ./python

echo "[python] pytest python/tests"
if [ ! -x target/debug/nnmpi ]; then
    cargo build
fi
NNMPI_BIN="$PWD/target/debug/nnmpi" "$venv/bin/python" -m pytest -q python/tests
