#!/usr/bin/env bash
# A simulated cluster on this machine: N "hosts", each a network namespace with its own
# hostname (a UTS namespace per started process) and address 10.77.0.<i>, joined by a bridge
# (mpirun, in the root namespace, is 10.77.0.254). Open MPI starts its daemons on them through
# scripts/netns-rsh instead of ssh and talks TCP between them, so what crosses a network here
# crosses this bridge; `cut <i>` takes host i's link down.
#
#   scripts/sim-cluster.sh up [N]        create N hosts (default 4) and target/sim-cluster/hostfile
#   scripts/sim-cluster.sh mpirun ARGS   mpirun over the hosts (the MCA settings below added)
#   scripts/sim-cluster.sh cut I         link of host I down
#   scripts/sim-cluster.sh down          remove the hosts and the bridge
#   scripts/sim-cluster.sh test          up, the cluster tests, down (needs root and iproute2;
#                                        says "skipped" and exits 0 without them)
#
# The mpirun settings are those a real cluster wants too (hostfiles/cluster.example):
# TCP keepalive on the runtime's connections, so a host that drops off is noticed in seconds
# rather than minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/target/sim-cluster
BRIDGE=nnsimbr0
NET=10.77.0
KEEPALIVE=(--mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

up() {
    local n=${1:-4}
    down 2>/dev/null || true
    mkdir -p "$DIR"
    ip link add $BRIDGE type bridge
    ip addr add $NET.254/24 dev $BRIDGE
    ip link set $BRIDGE up
    : > "$DIR/hostfile"
    for i in $(seq 1 "$n"); do
        ip netns add nnsim$i
        ip link add nnsimv$i type veth peer name eth0 netns nnsim$i
        ip link set nnsimv$i master $BRIDGE up
        ip -n nnsim$i addr add $NET.$i/24 dev eth0
        ip -n nnsim$i link set eth0 up
        ip -n nnsim$i link set lo up
        echo "$NET.$i slots=1" >> "$DIR/hostfile"
    done
    echo "[sim-cluster] $n hosts up: $DIR/hostfile"
}

down() {
    # Every nnsim* namespace, whatever the hosts file says: an interrupted run leaves them.
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^nnsim[0-9]+$/ {print $1}'); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    for ns in $(ip -o link show 2>/dev/null | awk -F'[ :@]+' '$2 ~ /^nnsimv[0-9]+$/ {print $2}'); do
        ip link del "$ns" 2>/dev/null || true
    done
    ip link del $BRIDGE 2>/dev/null || true
}

cluster_mpirun() {
    # --bind-to none: Open MPI binds a host's only rank to that host's core 0, and here every
    # host is this machine, so all ranks would share one core.
    mpirun --bind-to none --hostfile "${HOSTFILE:-$DIR/hostfile}" --mca plm_rsh_agent "$ROOT/scripts/netns-rsh" \
        --mca oob_tcp_if_include $NET.0/24 --mca btl tcp,self --mca btl_tcp_if_include $NET.0/24 \
        "${KEEPALIVE[@]}" "$@"
}

cut_link() {
    ip link set nnsimv"$1" down
}

# ---- the tests ----------------------------------------------------------------------------

fail() { echo "[sim-cluster] FAILED: $*" >&2; exit 1; }

run_tests() {
    # NNMPI_BIN: a binary already built with MPI (test.sh passes the one `cargo test` built);
    # without it, a release build.
    local bin=${NNMPI_BIN:-$ROOT/target/release/nnmpi} sonar=$ROOT/data/sonar.csv t=$DIR/work
    [ -n "${NNMPI_BIN:-}" ] || cargo build --release --quiet
    rm -rf "$t" && mkdir -p "$t"
    export RAYON_NUM_THREADS=1

    echo "[sim-cluster] predictions on 4 hosts equal one process's, byte for byte"
    "$bin" train --data "$sonar" --hidden 24,10 --epochs 3 --quiet --out "$t/one.nnmpi"
    "$bin" predict --model "$t/one.nnmpi" --data "$sonar" --out "$t/one.csv"
    cluster_mpirun -np 4 "$bin" predict --model "$t/one.nnmpi" --data "$sonar" --out "$t/four.csv"
    cmp "$t/one.csv" "$t/four.csv" || fail "predictions on 4 hosts differ"

    echo "[sim-cluster] training on 4 hosts writes the checkpoint of 4 ranks on one host"
    cluster_mpirun -np 4 "$bin" train --data "$sonar" --hidden 24,10 --epochs 3 --quiet --out "$t/hosts.nnmpi"
    mpirun --oversubscribe --bind-to none -np 4 "$bin" train --data "$sonar" --hidden 24,10 --epochs 3 --quiet --out "$t/local.nnmpi"
    cmp "$t/hosts.nnmpi" "$t/local.nnmpi" || fail "4 hosts and 4 local ranks trained different checkpoints"

    echo "[sim-cluster] the README's cluster lines: install, 2 ranks per host of 2 threads, train, eval"
    # The README installs with `cargo install --path . --root $HOME/.local --locked`, which
    # builds this same binary again (about 2 minutes); NNMPI_SIM_CARGO_INSTALL=1 runs it as written.
    if [ "${NNMPI_SIM_CARGO_INSTALL:-0}" = 1 ]; then
        CARGO_TARGET_DIR=$ROOT/target cargo install --path "$ROOT" --root "$t/local" --locked --quiet
    else
        install -D "$bin" "$t/local/bin/nnmpi"
    fi
    sed 's/slots=1/slots=2/' "$DIR/hostfile" > "$t/hostfile"
    HOSTFILE=$t/hostfile cluster_mpirun -np 8 --map-by ppr:2:node -x RAYON_NUM_THREADS=2 \
        "$t/local/bin/nnmpi" train --data "$sonar" --hidden 64,32 --epochs 5 --quiet --out "$t/readme.nnmpi"
    # Into a file, then grep: `eval | grep -q` under pipefail fails whenever grep exits before
    # eval has written its last line (eval gets SIGPIPE).
    "$t/local/bin/nnmpi" eval --model "$t/readme.nnmpi" --data "$sonar" > "$t/readme-eval.txt" 2>&1 ||
        { cat "$t/readme-eval.txt" >&2; fail "the model trained by the README's line does not evaluate"; }
    grep -q accuracy "$t/readme-eval.txt" ||
        { cat "$t/readme-eval.txt" >&2; fail "evaluating the README's model prints no accuracy"; }

    echo "[sim-cluster] a host whose link goes down ends the job within 30 s, 5 times of 5"
    for round in 1 2 3 4 5; do
        local log=$t/cut$round.csv
        cluster_mpirun -np 4 "$bin" train --data "$sonar" --hidden 64 --epochs 10000000 --quiet \
            --log "$log" > "$t/cut$round.out" 2>&1 &
        local job=$!
        for _ in $(seq 1 600); do [ -s "$log" ] && [ "$(wc -l < "$log")" -gt 3 ] && break; sleep 0.1; done
        [ "$(wc -l < "$log")" -gt 3 ] || { kill $job; fail "round $round: no epochs"; }
        local host=$(( (round % 3) + 2 ))    # never host 1, where rank 0 runs
        local start=$SECONDS
        cut_link $host
        local ended=""
        for _ in $(seq 1 300); do kill -0 $job 2>/dev/null || { ended=1; break; }; sleep 0.1; done
        local took=$(( SECONDS - start ))
        ip link set nnsimv$host up
        if [ -z "$ended" ]; then
            kill -9 $job 2>/dev/null || true
            ip netns pids nnsim$host | xargs -r kill -9 || true
            cat "$t/cut$round.out" >&2
            fail "round $round: the job still ran 30 s after host $host's link went down"
        fi
        local status=0
        wait $job || status=$?
        [ "$status" -ne 0 ] || fail "round $round: exit status 0 after a lost host"
        # The watchdog's roll call (after 5 s of waiting) names the rank that stopped
        # answering, in one message; mpirun's keepalive then ends the job.
        local named="warning: rank $((host - 1)) of 4 (on nnsim$host) does not answer"
        [ "$(grep -c -e "^warning: " -e "^error: " "$t/cut$round.out")" = 1 ] && grep -q "^$named" "$t/cut$round.out" ||
            { cat "$t/cut$round.out" >&2; fail "round $round: not one message naming rank $((host - 1))"; }
        echo "[sim-cluster]   round $round: host $host cut, job ended in ${took} s with status $status"
        ip netns pids nnsim$host | xargs -r kill -9 || true
    done

    echo "[sim-cluster] a stopped rank (SIGSTOP) ends the job within the stall timeout + 10 s"
    local log=$t/stop.csv timeout=15
    cluster_mpirun -np 4 "$bin" train --data "$sonar" --hidden 64 --epochs 10000000 --quiet \
        --stall-timeout $timeout --log "$log" > "$t/stop.out" 2>&1 &
    local job=$!
    for _ in $(seq 1 600); do [ -s "$log" ] && [ "$(wc -l < "$log")" -gt 3 ] && break; sleep 0.1; done
    local victim
    victim=$(ip netns pids nnsim3 | xargs -r ps -o pid=,comm= -p | awk '$2 == "nnmpi" {print $1}')
    [ -n "$victim" ] || { kill $job; fail "no nnmpi process on host 3"; }
    local start=$SECONDS
    kill -STOP $victim
    local ended=""
    for _ in $(seq 1 $(( (timeout + 10) * 10 ))); do kill -0 $job 2>/dev/null || { ended=1; break; }; sleep 0.1; done
    local took=$(( SECONDS - start ))
    kill -9 $victim 2>/dev/null || true
    [ -n "$ended" ] || { kill -9 $job; cat "$t/stop.out" >&2; fail "the job ran on $((timeout + 10)) s after rank 2 stopped"; }
    local status=0
    wait $job || status=$?
    grep -q "^error: rank 2 of 4 (on nnsim3) does not answer" "$t/stop.out" && [ "$status" = 124 ] ||
        { cat "$t/stop.out" >&2; fail "a stopped rank: status $status, or rank 2 not named"; }
    echo "[sim-cluster]   rank 2 stopped, job ended in ${took} s with status $status (stall timeout ${timeout} s)"
    echo "[sim-cluster] all passed"
}

case "${1:-}" in
    up) up "${2:-4}" ;;
    down) down ;;
    mpirun) shift; cluster_mpirun "$@" ;;
    cut) cut_link "$2" ;;
    test)
        if [ "$(id -u)" != 0 ] || ! command -v ip > /dev/null || ! ip netns add nnsimprobe 2>/dev/null; then
            echo "[sim-cluster] skipped: network namespaces need root and iproute2"
            exit 0
        fi
        ip netns del nnsimprobe
        trap down EXIT
        up 4
        run_tests
        ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
