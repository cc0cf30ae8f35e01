#!/usr/bin/env bash
# A one-node Slurm cluster started for the test, and the launch tests on it:
#   - `srun -n 2 nnmpi train` without an MPI plugin (Slurm's default MpiDefault=none) refuses,
#     with one message and a nonzero status, instead of running two independent trainings;
#   - `srun --mpi=pmix -n 2 nnmpi train` writes the checkpoint of `mpirun -np 2`, byte for byte.
# It installs Debian's slurm-wlm and munge when missing, starts munged if none runs, and runs a
# private slurmctld and slurmd (configuration and state under target/slurm-test/, their own
# ports) that it stops on exit. It needs root and apt (or Slurm already installed), and says
# "skipped" and exits 0 without them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/target/slurm-test
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

skip() { echo "[slurm] skipped: $*"; exit 0; }
fail() { echo "[slurm] FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "starting slurmctld, slurmd and munged needs root"
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null || ! command -v munged > /dev/null; then
    command -v apt-get > /dev/null || skip "Slurm is not installed and there is no apt-get"
    echo "[slurm] installing slurm-wlm and munge"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null ||
        skip "apt-get could not install slurm-wlm and munge"
fi

# munge authenticates Slurm's messages: start it unless one runs.
if ! munge -n > /dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
    mkdir -p /run/munge && chown munge:munge /run/munge
    su -s /bin/sh munge -c /usr/sbin/munged
    for _ in $(seq 1 50); do munge -n > /dev/null 2>&1 && break; sleep 0.1; done
    munge -n > /dev/null 2>&1 || fail "munged did not start"
fi

stop() {
    for daemon in slurmd slurmctld; do
        [ -s "$DIR/$daemon.pid" ] && kill "$(cat "$DIR/$daemon.pid")" 2>/dev/null || true
    done
}
trap stop EXIT
stop
rm -rf "$DIR" && mkdir -p "$DIR/state" "$DIR/spool" "$DIR/work"
host=$(hostname -s)
cpus=$(nproc)
cat > "$DIR/slurm.conf" <<EOF
ClusterName=nnmpitest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF=$DIR/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 100); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %t | grep -q idle || { tail -20 "$DIR"/*.log >&2; fail "the Slurm node did not become idle"; }
echo "[slurm] one-node Slurm up ($host, $cpus CPUs)"
srun --mpi=list > "$DIR/mpi-list.txt" 2>&1 || true grep -qw pmix "$DIR/mpi-list.txt" || skip "this Slurm has no pmix plugin (srun --mpi=list)"

# NNMPI_BIN: a binary already built with MPI (test.sh passes the one `cargo test` built);
# without it, a release build.
[ -n "${NNMPI_BIN:-}" ] || cargo build --release --quiet
bin=${NNMPI_BIN:-$ROOT/target/release/nnmpi} t=$DIR/work
train=(train --data "$ROOT/data/sonar.csv" --hidden 16,8 --epochs 3 --quiet)

echo "[slurm] srun -n 2 without an MPI plugin refuses, once, with status != 0"
status=0
timeout 120 srun -n 2 "$bin" "${train[@]}" --out "$t/dup.nnmpi" > "$t/dup.out" 2>&1 || status=$?
[ "$status" != 0 ] || { cat "$t/dup.out" >&2; fail "srun -n 2 without --mpi exited 0"; }
[ "$(grep -c "^error: Slurm started 2 tasks" "$t/dup.out")" = 1 ] && grep -q "srun --mpi=pmix" "$t/dup.out" ||
    { cat "$t/dup.out" >&2; fail "not one message naming srun --mpi=pmix"; }
[ ! -e "$t/dup.nnmpi" ] || fail "the refused run wrote a checkpoint"

echo "[slurm] srun --mpi=pmix -n 2 writes the checkpoint of mpirun -np 2, byte for byte"
timeout 120 srun --mpi=pmix -n 2 "$bin" "${train[@]}" --out "$t/srun.nnmpi" ||
    { tail -20 "$DIR"/*.log >&2; fail "srun --mpi=pmix -n 2 failed"; }
timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin" "${train[@]}" --out "$t/mpirun.nnmpi"
cmp "$t/srun.nnmpi" "$t/mpirun.nnmpi" || fail "srun --mpi=pmix and mpirun trained different checkpoints"
echo "[slurm] all passed"
