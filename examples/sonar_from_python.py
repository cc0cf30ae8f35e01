"""Sonar from NumPy arrays: train, prune to 90% sparsity, save, reload, predict.

    python examples/sonar_from_python.py [OUT_DIR]        # after `pip install ./python`

Runs unchanged under `mpirun -np 2 python examples/sonar_from_python.py` (every rank computes
its share of each layer; rank 0 prints and saves).
"""

import sys
from pathlib import Path

import numpy as np

import nnmpi

data = Path(__file__).resolve().parents[1] / "data" / "sonar.csv"
out = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
X = np.loadtxt(data, delimiter=",", usecols=range(60), dtype=np.float32)
y = np.loadtxt(data, delimiter=",", usecols=60, dtype=str)
rank, ranks = nnmpi.world()
say = print if rank == 0 else (lambda *a, **k: None)


def progress(metrics):
    if metrics["epoch"] % 25 == 0:
        say(f"epoch {metrics['epoch']}: loss {metrics['train_loss']:.4f}, "
            f"validation accuracy {metrics['val_accuracy']:.3f}")


# The same settings and defaults as `nnmpi train` (nnmpi.defaults() lists them).
model = nnmpi.train(X, y, hidden=[60], normalize="zscore", epochs=100, val_split=0.2,
                    callback=progress)
pruned = model.prune(0.9, X, y, steps=5, finetune_epochs=10)
say(f"dense:  {model.parameter_count} parameters, accuracy {model.evaluate(X, y)['accuracy']:.3f}")
say(f"pruned: {pruned.parameter_count} parameters, accuracy {pruned.evaluate(X, y)['accuracy']:.3f}")

if rank == 0:
    out.mkdir(exist_ok=True)
    pruned.save(out / "sonar-pruned.nnmpi")
    again = nnmpi.Model.load(out / "sonar-pruned.nnmpi")
    say("predicted:", again.predict(X[:8]), "\ntrue:     ", y[:8])
    say(f"saved {out / 'sonar-pruned.nnmpi'}")
