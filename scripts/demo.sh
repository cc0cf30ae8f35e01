#!/usr/bin/env bash
# The main job on the bundled data: installs what is missing, builds in release, runs 5-fold
# cross-validation of a 60-60-1 network on Sonar (the seed's 60-input data set), trains and
# saves a model, describes it, evaluates it and writes its predictions; then trains the same
# network on 2 MPI ranks (neurons of every layer split between them), evaluates that model on
# 2 data-parallel ranks and times both engines on the seed's 1000-1000-1000-1 network; finally
# prunes the model to 90% sparsity in 4-row blocks with fine-tuning, and times a 4096x4096
# layer dense and pruned. Outputs go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh

echo "[demo] building (release)"
cargo build --release --quiet
nnmpi=target/release/nnmpi
mkdir -p out

set -x
"$nnmpi" train --data data/sonar.csv --hidden 60 --normalize zscore --epochs 100 --kfold 5 \
    --out out/sonar.nnmpi --log out/sonar-metrics.csv --quiet
"$nnmpi" info --model out/sonar.nnmpi
"$nnmpi" eval --model out/sonar.nnmpi --data data/sonar.csv
"$nnmpi" predict --model out/sonar.nnmpi --data data/sonar.csv --out out/sonar-predictions.csv
head -n 4 out/sonar-predictions.csv

# The same on 2 MPI ranks: each holds half of every layer's neurons.
mpirun -np 2 "$nnmpi" train --data data/sonar.csv --hidden 60 --normalize zscore --epochs 100 \
    --out out/sonar-2ranks.nnmpi --quiet
mpirun -np 2 "$nnmpi" eval --model out/sonar-2ranks.nnmpi --data data/sonar.csv --parallel data
"$nnmpi" info --model out/sonar-2ranks.nnmpi --ranks 2
# The seed's scaling study: one sample through 1000-1000-1000-1, on 1 and 2 ranks.
RAYON_NUM_THREADS=1 "$nnmpi" bench --layers 1000,1000,1000,1 --batch 1 --activation sigmoid --reps 100
mpirun -np 2 -x RAYON_NUM_THREADS=1 "$nnmpi" bench --layers 1000,1000,1000,1 --batch 1 --activation sigmoid --reps 100
# Pruning: 90% of the connections in blocks of 4 neurons, 10 steps with 20 fine-tuning epochs
# each, then the compact layer against the dense one (1 thread).
"$nnmpi" prune --model out/sonar.nnmpi --out out/sonar-pruned.nnmpi --sparsity 0.9 --block 4 \
    --steps 10 --finetune-epochs 20 --data data/sonar.csv
"$nnmpi" info --model out/sonar-pruned.nnmpi
RAYON_NUM_THREADS=1 "$nnmpi" bench --layers 4096,4096 --sparsity 0.9 --block 4 --format dense --reps 5
RAYON_NUM_THREADS=1 "$nnmpi" bench --layers 4096,4096 --sparsity 0.9 --block 4 --format sparse --reps 5
