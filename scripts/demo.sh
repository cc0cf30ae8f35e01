#!/usr/bin/env bash
# The main job on the bundled data: installs what is missing, builds in release, runs 5-fold
# cross-validation of a 60-60-1 network on Sonar (the seed's 60-input data set), trains and
# saves a model, describes it, evaluates it and writes its predictions. Outputs go to out/.
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
