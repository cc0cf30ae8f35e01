#!/usr/bin/env bash
# Installs what building nnmpi needs on Debian/Ubuntu and is missing: Open MPI (library,
# headers, mpirun), libclang (rsmpi generates its bindings with bindgen) and python3-venv
# (the Python package is tested in a virtual environment). Safe to re-run:
# present packages are skipped. Sourced by demo.sh and test.sh.
set -euo pipefail

need=()
for pkg in libopenmpi-dev openmpi-bin libclang-dev pkg-config python3-venv; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        echo "[deps] $pkg: present"
    else
        need+=("$pkg")
    fi
done
if ((${#need[@]})); then
    echo "[deps] installing: ${need[*]}"
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "[deps] need root or sudo to install ${need[*]}" >&2; exit 1; }
        sudo_cmd=(sudo)
    fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "[deps] cargo is not installed: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
fi

# Open MPI refuses to run as root unless told it may (containers, CI machines).
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
