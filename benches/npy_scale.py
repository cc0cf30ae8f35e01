"""Training on an NPY data set larger than a rank can hold: resident memory per rank, time per
epoch and bytes read per rank (BENCHMARKS.md, "Data at scale").

    python3 benches/npy_scale.py [--samples 2000000] [--features 1024] [--dir /tmp/npy-scale]
                                 [--ranks 2] [--hidden 64] [--epochs 1]

Writes DIR/features.npy ([samples, features] float32, 8 GB at the defaults; written in chunks,
never held whole) and DIR/labels.npy (10 classes: the arg-max of a fixed random projection of
the features, so there is something to learn) unless they exist with that shape, then runs

    mpirun -np RANKS /usr/bin/time -f ... nnmpi train --data DIR --parallel data --normalize zscore \
        --log-dir ...

and prints each rank's peak resident memory (ru_maxrss), the epochs' seconds and the samples
(and bytes) each rank read. Needs NumPy and the release build (cargo build --release).
"""

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 65536


def generate(folder: Path, samples: int, features: int) -> None:
    x_path, y_path = folder / "features.npy", folder / "labels.npy"
    if x_path.exists() and y_path.exists():
        x = np.load(x_path, mmap_mode="r")
        if x.shape == (samples, features):
            print(f"using {x_path} ({x.nbytes / 1e9:.1f} GB)")
            return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    projection = rng.standard_normal((features, 10)).astype(np.float32)
    x = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(samples, features))
    y = np.empty(samples, dtype=np.int64)
    start = time.time()
    for lo in range(0, samples, CHUNK):
        hi = min(samples, lo + CHUNK)
        block = rng.standard_normal((hi - lo, features), dtype=np.float32)
        x[lo:hi] = block
        y[lo:hi] = np.argmax(block @ projection, axis=1)
        x.flush()
    del x
    np.save(y_path, y)
    print(f"wrote {x_path} ({samples * features * 4 / 1e9:.1f} GB) in {time.time() - start:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/npy-scale"))
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--hidden", default="64")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    nnmpi = os.environ.get("NNMPI_BIN", str(ROOT / "target/release/nnmpi"))
    generate(args.dir, args.samples, args.features)
    logs = args.dir / "logs"
    for old in logs.glob("*"):
        old.unlink()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               RAYON_NUM_THREADS="1")
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(args.ranks),
           "/usr/bin/time", "-f", "rank-rss-kib %M", nnmpi, "train", "--data", str(args.dir),
           "--parallel", "data", "--hidden", args.hidden, "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--normalize", "zscore", "--log-dir", str(logs),
           "--out", str(args.dir / "model.nnmpi"), "--quiet"]
    print(" ".join(cmd))
    start = time.time()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - start
    sys.stdout.write(run.stdout)
    rss = [int(line.split()[1]) for line in run.stderr.splitlines() if line.startswith("rank-rss-kib")]
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        sys.exit(run.returncode)
    row_bytes = args.features * 4
    print(f"whole job: {wall:.1f} s (mapping, statistics pass, epochs, final evaluation, checkpoint)")
    print("peak resident memory per rank: " + ", ".join(f"{k / 1024:.0f} MiB" for k in sorted(rss)))
    for rank in range(args.ranks):
        with open(logs / f"rank-{rank}.csv") as f:
            for line in csv.DictReader(f):
                read = int(line["samples_read"])
                print(f"rank {rank} epoch {line['epoch']}: {float(line['seconds']):.1f} s "
                      f"(collectives {float(line['comm_s']):.1f} s), read {read} samples = "
                      f"{read * row_bytes / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
