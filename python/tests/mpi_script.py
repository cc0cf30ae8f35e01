"""Run by test_mpi.py under `mpirun -np N`: what a user's script does, on every rank.

    mpi_script.py OUT_DIR MODEL [--mpi4py]

predicts Sonar with MODEL, trains and prunes a model from the arrays, and writes, per rank,
the predictions and the exported models to OUT_DIR (every rank writes its own copies, so the
test can check that every rank got the same results).
"""

import sys
from pathlib import Path

if "--mpi4py" in sys.argv:
    from mpi4py import MPI  # initialises MPI before nnmpi does

    assert MPI.Is_initialized()

import numpy as np  # noqa: E402

import nnmpi  # noqa: E402
from test_model import sonar_features  # noqa: E402

out, model_path = Path(sys.argv[1]), sys.argv[2]
rank, ranks = nnmpi.world()
X = sonar_features()
with open(Path(__file__).resolve().parents[2] / "data" / "sonar.csv") as f:
    y = [line.rstrip("\n").split(",")[-1] for line in f]

model = nnmpi.Model.load(model_path)
np.save(out / f"outputs-{rank}.npy", model.outputs(X))
np.save(out / f"outputs-b7-{rank}.npy", model.outputs(X, batch_size=7))
trained = nnmpi.train(X, y, hidden=[12], epochs=3, seed=3, val_split=0.2)
trained.export_safetensors(out / f"trained-{rank}.safetensors")
pruned = trained.prune(0.5, X, y, steps=2, finetune_epochs=1)
pruned.export_safetensors(out / f"pruned-{rank}.safetensors")
(out / f"world-{rank}.txt").write_text(f"{rank} {ranks} {trained.evaluate(X, y)['accuracy']}")
