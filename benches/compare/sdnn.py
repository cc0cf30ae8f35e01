#!/usr/bin/env python3
"""GraphChallenge sparse DNN: `nnmpi sdnn` side by side with a plain scipy CSR loop.

The same challenge files, the same inference rule (Y <- min(max(Y.W + b, 0), 32), the bias
added to the nonzeros of Y.W as GraphBLAS does, zeros dropped), in one sitting: each round
times scipy (one core), then nnmpi on 1 thread, 2 threads and 2 MPI ranks, each as it runs
by default (every group of equal neurons computed once) and with --every-neuron (every neuron
computed, as scipy does); the table gives the medians over the rounds. Every answer is checked
against the truth.

    python3 -m venv /tmp/sdnn-env && /tmp/sdnn-env/bin/pip install numpy scipy
    cargo build --release
    /tmp/sdnn-env/bin/python benches/compare/sdnn.py [--data ../shared/data/graphchallenge]
"""

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def read_mtx_pattern(path):
    import numpy as np
    import scipy.sparse as sp

    with gzip.open(path, "rt") as f:
        lines = [l for l in f if not l.startswith("%")]
    rows, cols, _ = map(int, lines[0].split())
    ij = np.array([list(map(int, l.split()[:2])) for l in lines[1:]]) - 1
    data = np.ones(len(ij), dtype=np.float32)
    return sp.csr_matrix((data, (ij[:, 0], ij[:, 1])), shape=(rows, cols))


def read_layers(folder, neurons, layers):
    import numpy as np
    import scipy.sparse as sp

    out = []
    for k in range(1, layers + 1):
        d = np.loadtxt(folder / f"n{neurons}-l{k}.tsv.gz", dtype=np.float32)
        i, j = d[:, 0].astype(int) - 1, d[:, 1].astype(int) - 1
        out.append(sp.csr_matrix((d[:, 2], (i, j)), shape=(neurons, neurons)))
    return out


def scipy_inference(y0, weights, bias):
    import numpy as np

    y = y0
    for w in weights:
        z = y @ w
        z.data += np.float32(bias)
        np.clip(z.data, 0, 32, out=z.data)
        z.eliminate_zeros()
        y = z
    return y


def nnmpi_run(nnmpi, args, threads=None, ranks=None):
    cmd = [nnmpi, "sdnn", *args, "--json"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if ranks:
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(ranks),
               "-x", "RAYON_NUM_THREADS=1", *cmd]
    else:
        cmd = [cmd[0], "--threads", str(threads), *cmd[1:]]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "graphchallenge"))
    ap.add_argument("--nnmpi", default=str(ROOT / "target" / "release" / "nnmpi"))
    ap.add_argument("--layers", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=21, help="nnmpi's repetitions per run (it reports the median)")
    a = ap.parse_args()
    data = Path(a.data)
    truth = set(read_mtx_pattern(data / "neuron1024-l120-categories_subset.mtx.gz").nonzero()[0])
    y0 = read_mtx_pattern(data / "sparse-images-1024_subset.mtx.gz")
    weights = read_layers(data / "neuron1024", 1024, a.layers)
    edges = sum(w.nnz for w in weights)
    args = ["--weights", str(data / "neuron1024"), "--neurons", "1024", "--layers", str(a.layers),
            "--inputs", str(data / "sparse-images-1024_subset.mtx.gz"), "--reps", str(a.reps)]
    if a.layers == 120:
        args += ["--truth", str(data / "neuron1024-l120-categories_subset.mtx.gz")]
    configs = [(f"nnmpi {where}{every}", kw, ["--every-neuron"] if every else [])
               for every in ["", ", --every-neuron"]
               for where, kw in [("1 thread", {"threads": 1}), ("2 threads", {"threads": 2}),
                                 ("2 ranks x 1 thread", {"ranks": 2})]]
    runs = {"scipy, 1 core": [], **{name: [] for name, _, _ in configs}}
    for _ in range(a.rounds):
        t = time.perf_counter()
        y = scipy_inference(y0, weights, -0.3)
        runs["scipy, 1 core"].append(time.perf_counter() - t)
        found = set(y.nonzero()[0])
        if a.layers == 120 and found != truth:
            sys.exit(f"scipy's categories differ from the truth: {len(found)} against {len(truth)}")
        for name, kw, extra in configs:
            r = nnmpi_run(a.nnmpi, args + extra, **kw)
            if r["pass"] is False:
                sys.exit(f"{name}: the categories differ from the truth")
            runs[name].append(r["seconds"])
    base = statistics.median(runs["scipy, 1 core"])
    print(f"GraphChallenge 1024 x {a.layers}, {y0.shape[0]} inputs, {edges} edges; medians of {a.rounds} rounds")
    print("| run | seconds | edges/s | vs scipy |")
    print("|---|---|---|---|")
    for name, ts in runs.items():
        s = statistics.median(ts)
        print(f"| {name} | {s:.4f} | {y0.shape[0] * edges / s:.3e} | {base / s:.1f}x |")


if __name__ == "__main__":
    main()
