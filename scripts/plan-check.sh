#!/usr/bin/env bash
# Checks the cost model against measured runs, in one sitting: calibrates on 2 ranks
# (`nnmpi bench --calibrate`), predicts with `nnmpi plan`, then times the same network
# (`nnmpi bench`, default 4096-4096-4096, batch 256) on 1 rank and on 2 ranks as 1x2 (model)
# and 2x1 (data), for predict and train, one thread per rank, and prints predicted against
# measured as a Markdown table.
#
#   scripts/plan-check.sh local    2 ranks on this host (mpirun --bind-to core)
#   scripts/plan-check.sh sim      2 simulated hosts (scripts/sim-cluster.sh; needs root)
#
# Environment: REPS (timed repetitions, default 5), LAYERS, BATCH. Files go to
# target/plan-check/<where>/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 RAYON_NUM_THREADS=1
where=${1:-local}
reps=${REPS:-5}
layers=${LAYERS:-4096,4096,4096}
batch=${BATCH:-256}
bin=$PWD/target/release/nnmpi
out=$PWD/target/plan-check/$where
cargo build --release --quiet
mkdir -p "$out"
case "$where" in
    local) launch=(mpirun --bind-to core) ;;
    sim)
        scripts/sim-cluster.sh up 2
        trap 'scripts/sim-cluster.sh down' EXIT
        launch=(scripts/sim-cluster.sh mpirun -x RAYON_NUM_THREADS)
        ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
esac
net=(--layers "$layers" --batch "$batch" --reps "$reps")

echo "[plan-check] $where: calibrating on 2 ranks"
"${launch[@]}" -np 2 "$bin" bench --calibrate --calibration "$out/calibration.json" "${net[@]}"
"$bin" plan --calibration "$out/calibration.json" --ranks 1,2 --json > "$out/plan.jsonl"
: > "$out/measured.jsonl"
for mode in predict train; do
    echo "[plan-check] $where: timing $mode"
    if [ "$where" = local ]; then
        "$bin" bench --mode "$mode" "${net[@]}" --json >> "$out/measured.jsonl"
    fi
    for grid in 1x2 2x1; do
        "${launch[@]}" -np 2 "$bin" bench --mode "$mode" --grid "$grid" "${net[@]}" --json >> "$out/measured.jsonl"
    done
done
python3 - "$out" "$where" <<'EOF'
import json, sys
out, where = sys.argv[1], sys.argv[2]
plan = {}
for line in open(f"{out}/plan.jsonl"):
    p = json.loads(line)
    plan[(p["ranks"], p["grid"])] = p
print(f"| where | ranks | grid | mode | predicted | measured | predicted / measured | comm predicted | comm measured |")
print("|---|---|---|---|---|---|---|---|---|")
worst = 0.0
for line in open(f"{out}/measured.jsonl"):
    m = json.loads(line)
    p = plan[(m["ranks"], m["grid"])]
    predicted = p[m["mode"] + "_ms"]
    ratio = predicted / m["median_ms"]
    worst = max(worst, abs(ratio - 1))
    print(f"| {where} | {m['ranks']} | {m['grid']} | {m['mode']} | {predicted:.1f} ms | {m['median_ms']:.1f} ms "
          f"| {ratio:.2f} | {100 * p[m['mode'] + '_comm_share']:.0f}% | {100 * m['comm_share']:.0f}% |")
print(f"\nlargest error: {100 * worst:.0f}%")
EOF
