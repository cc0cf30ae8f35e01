#!/usr/bin/env python3
"""nnmpi side by side with PyTorch, TensorFlow and ONNX Runtime.

1. Interop: the same weights (nnmpi's safetensors export, or a PyTorch model imported into
   nnmpi) give the same predictions in nnmpi and in PyTorch (max |difference| <= 1e-5), on
   Sonar and on a 784-1024-1024-10 network.
2. Timing: every case runs in a fresh process per framework and thread count; each process
   reports the median of repeated timings. nnmpi's side is `nnmpi bench --json`.
3. A table (Markdown and JSON) with the ratio of the best peer's time to nnmpi's.

Optional: needs numpy and safetensors; torch, tensorflow(-cpu) and onnxruntime (+ onnx) are
used when installed and skipped (said so) when not. Never part of scripts/test.sh.

    python3 benches/compare/compare.py                  # everything, 1 and 2 threads
    python3 benches/compare/compare.py --only interop   # just the interop check
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# name -> (kind, spec); kind decides what is timed.
CASES = {
    "single 60-3-1": dict(kind="predict", layers=[60, 3, 1], act="sigmoid", out="sigmoid", batch=1),
    "784-1024-1024-10 b1": dict(kind="predict", layers=[784, 1024, 1024, 10], act="relu", out="identity", batch=1),
    "784-1024-1024-10 b64": dict(kind="predict", layers=[784, 1024, 1024, 10], act="relu", out="identity", batch=64),
    "784-1024-1024-10 b1024": dict(kind="predict", layers=[784, 1024, 1024, 10], act="relu", out="identity", batch=1024),
    "4096-4096-4096 b256": dict(kind="predict", layers=[4096, 4096, 4096], act="relu", out="identity", batch=256),
    "epoch 784-256-256-10 b32": dict(kind="epoch", layers=[784, 256, 256, 10], act="relu", out="softmax", batch=32, samples=60000),
    "sparse 90% 4096x4096 b256": dict(kind="sparse", layers=[4096, 4096], batch=256, sparsity=0.90),
    "sparse 95% 4096x4096 b256": dict(kind="sparse", layers=[4096, 4096], batch=256, sparsity=0.95),
    "sparse 99% 4096x4096 b256": dict(kind="sparse", layers=[4096, 4096], batch=256, sparsity=0.99),
    # Pruned in blocks of 4 rows (`nnmpi prune --block 4`); every peer runs its CSR product.
    "sparse 90% blocks of 4": dict(kind="sparse", layers=[4096, 4096], batch=256, sparsity=0.90, block=4),
    "sparse 95% blocks of 4": dict(kind="sparse", layers=[4096, 4096], batch=256, sparsity=0.95, block=4),
    "sparse 99% blocks of 4": dict(kind="sparse", layers=[4096, 4096], batch=256, sparsity=0.99, block=4),
}
PEERS = ["torch", "torch-fast", "tf", "tf-fast", "ort"]


def have(module):
    return importlib.util.find_spec(module) is not None


def median_time(fn, min_seconds=0.5, reps=7):
    """Median seconds per call of fn over `reps` repetitions of enough calls to last
    min_seconds / reps each."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(min_seconds / reps / once))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


# ---------------------------------------------------------------- frameworks (worker side)

def random_weights(layers, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((o, i), dtype=np.float32) * np.float32(np.sqrt(2.0 / i)),
         rng.standard_normal(o, dtype=np.float32) * np.float32(0.01))
        for i, o in zip(layers[:-1], layers[1:])
    ]


def torch_model(weights, act, out):
    import torch
    acts = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh,
            "identity": torch.nn.Identity, "softmax": lambda: torch.nn.Softmax(dim=1)}
    mods = []
    for k, (w, b) in enumerate(weights):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods += [lin, acts[out if k == len(weights) - 1 else act]()]
    return torch.nn.Sequential(*mods)


def time_torch(spec, fast):
    import numpy as np
    import torch
    torch.set_num_threads(int(os.environ["CMP_THREADS"]))
    if spec["kind"] == "sparse":
        w = sparse_weight(spec)
        x = torch.from_numpy(np.random.default_rng(1).standard_normal((spec["layers"][0], spec["batch"]), dtype=np.float32))
        ws = torch.from_numpy(w).to_sparse_csr()
        with torch.no_grad():
            return median_time(lambda: torch.sparse.mm(ws, x))
    weights = random_weights(spec["layers"])
    if spec["kind"] == "epoch":
        model = torch_model(weights, spec["act"], "identity")
        rng = np.random.default_rng(2)
        X = torch.from_numpy(rng.uniform(-1, 1, (spec["samples"], spec["layers"][0])).astype(np.float32))
        Y = torch.from_numpy((np.arange(spec["samples"]) * 7919 % spec["layers"][-1]).astype(np.int64))
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        loss = torch.nn.CrossEntropyLoss()
        bs = spec["batch"]
        # torch-fast: torch.compile (Inductor's C++ CPU backend, offline) on the model's
        # forward and backward and, separately, on the optimiser step.
        net = torch.compile(model) if fast else model
        step = torch.compile(opt.step) if fast else opt.step

        def epoch():
            for i in range(0, spec["samples"], bs):
                opt.zero_grad(set_to_none=True)
                loss(net(X[i:i + bs]), Y[i:i + bs]).backward()
                step()
        return median_time(epoch, min_seconds=0, reps=3)
    model = torch_model(weights, spec["act"], spec["out"]).eval()
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (spec["batch"], spec["layers"][0])).astype(np.float32))
    if fast:
        with torch.inference_mode():
            traced = torch.jit.freeze(torch.jit.trace(model, x))
            return median_time(lambda: traced(x))
    with torch.no_grad():
        return median_time(lambda: model(x))


def time_tf(spec, fast):
    import numpy as np
    import tensorflow as tf
    t = int(os.environ["CMP_THREADS"])
    tf.config.threading.set_intra_op_parallelism_threads(t)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if spec["kind"] == "sparse":
        return None
    weights = random_weights(spec["layers"])
    layers = []
    for k, (w, b) in enumerate(weights):
        act = spec["out"] if k == len(weights) - 1 else spec["act"]
        if spec["kind"] == "epoch" and k == len(weights) - 1:
            act = "identity"  # logits: the loss applies the softmax
        layers.append(tf.keras.layers.Dense(w.shape[0], activation=None if act == "identity" else act))
    model = tf.keras.Sequential([tf.keras.Input((spec["layers"][0],))] + layers)
    for layer, (w, b) in zip(model.layers, weights):
        layer.set_weights([w.T, b])
    if spec["kind"] == "epoch":
        return time_tf_epoch(tf, spec, model, fast)
    x = np.random.default_rng(1).uniform(-1, 1, (spec["batch"], spec["layers"][0])).astype(np.float32)
    if fast:
        f = tf.function(lambda v: model(v, training=False))
        xt = tf.constant(x)
        return median_time(lambda: f(xt).numpy())
    return median_time(lambda: model.predict(x, verbose=0), min_seconds=1.0)


def time_tf_epoch(tf, spec, model, fast):
    """One epoch of SGD over contiguous batches: `model.fit` (tf), or a `tf.function` train
    step called per batch (tf-fast)."""
    import numpy as np
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (spec["samples"], spec["layers"][0])).astype(np.float32)
    Y = (np.arange(spec["samples"]) * 7919 % spec["layers"][-1]).astype(np.int64)
    bs = spec["batch"]
    opt = tf.keras.optimizers.SGD(learning_rate=1e-4)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if not fast:
        model.compile(optimizer=opt, loss=loss)
        return median_time(lambda: model.fit(X, Y, batch_size=bs, epochs=1, shuffle=False, verbose=0),
                           min_seconds=0, reps=3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))

    batches = [(tf.constant(X[i:i + bs]), tf.constant(Y[i:i + bs])) for i in range(0, spec["samples"], bs)]

    def epoch():
        for x, y in batches:
            step(x, y)
    return median_time(epoch, min_seconds=0, reps=3)


def onnx_model(weights, act, out):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits, prev = [], [], "x"
    ops = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}
    for k, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [f"z{k}"], transB=1))
        prev = f"z{k}"
        a = out if k == len(weights) - 1 else act
        if a != "identity":
            nodes.append(helper.make_node(ops[a], [prev], [f"a{k}"]))
            prev = f"a{k}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weights[0][0].shape[1]])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [None, weights[-1][0].shape[0]])],
        inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(), prev


def time_ort(spec):
    import numpy as np
    import onnxruntime as ort
    if spec["kind"] != "predict":
        return None
    model, out = onnx_model(random_weights(spec["layers"]), spec["act"], spec["out"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ["CMP_THREADS"])
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-1, 1, (spec["batch"], spec["layers"][0])).astype(np.float32)
    # The fastest path: pre-bound input and output (no per-call allocation or name lookup).
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output(out)
    return median_time(lambda: sess.run_with_iobinding(binding))


def sparse_weight(spec):
    """A [out, in] weight with exactly `sparsity` of its entries zero (the smallest), or of
    its blocks of `block` rows sharing a column (the smallest L2 norms)."""
    import numpy as np
    (w, _), = random_weights(spec["layers"])
    b = spec.get("block", 1)
    norms = np.sqrt((w.reshape(w.shape[0] // b, b, w.shape[1]) ** 2).sum(axis=1))
    k = int(round(norms.size * spec["sparsity"]))
    cut = np.partition(norms.ravel(), k)[k]
    keep = np.repeat(norms >= cut, b, axis=0)
    return np.where(keep, w, 0).astype(np.float32)


def worker(framework, case):
    spec = CASES[case]
    fn = {"torch": lambda: time_torch(spec, False), "torch-fast": lambda: time_torch(spec, True),
          "tf": lambda: time_tf(spec, False), "tf-fast": lambda: time_tf(spec, True),
          "ort": lambda: time_ort(spec)}[framework]
    if framework == "torch-fast" and spec["kind"] == "sparse":
        print(json.dumps(None))  # sparse products are timed eagerly only
        return
    print(json.dumps(fn()))


# ---------------------------------------------------------------- driver

MODULE = {"torch": "torch", "torch-fast": "torch", "tf": "tensorflow", "tf-fast": "tensorflow", "ort": "onnxruntime"}


def run_peer(framework, case, threads):
    env = dict(os.environ, CMP_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="1")
    out = subprocess.run([sys.executable, __file__, "--worker", framework, case],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"  {framework} failed on {case}: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    value = json.loads(out.stdout.strip().splitlines()[-1])
    return None if value is None else value * 1e3


def run_nnmpi(nnmpi, case, threads):
    spec = CASES[case]
    layers = ",".join(map(str, spec["layers"]))
    args = [nnmpi, "--threads", str(threads), "bench", "--json", "--layers", layers,
            "--batch", str(spec["batch"])]
    if spec["kind"] == "predict":
        args += ["--activation", spec["act"], "--output-activation", spec["out"], "--reps", "15"]
    elif spec["kind"] == "epoch":
        args += ["--mode", "epoch", "--samples", str(spec["samples"]), "--reps", "3", "--warmup", "1"]
    else:
        args += ["--sparsity", str(spec["sparsity"]), "--block", str(spec.get("block", 1)),
                 "--format", "sparse", "--reps", "15"]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["median_ms"]


def interop(nnmpi, tmp):
    """Returns (name, max abs difference) pairs; raises if a framework is missing."""
    import numpy as np
    import torch
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    def torch_from_safetensors(path):
        with safe_open(path, "np") as f:
            meta = f.metadata()
        t = load_file(path)
        acts = meta["nnmpi.activations"].split(",")
        weights = [(t[f"layers.{i}.weight"], t[f"layers.{i}.bias"]) for i in range(len(acts))]
        hidden = acts[0] if len(acts) > 1 else "identity"
        model = torch_model(weights, hidden, acts[-1]).eval()
        norm = (t.get("normalizer.offset"), t.get("normalizer.scale"))
        return model, norm

    def nnmpi_predict(model, data, extra):
        out = subprocess.run([nnmpi, "predict", "--model", model, "--data", data, "--exact"] + extra,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        return np.array([[float(v) for v in line.split(",")[1:]] for line in out[1:]])

    results = []
    # Sonar: trained by nnmpi, exported, run by PyTorch.
    sonar = str(ROOT / "data" / "sonar.csv")
    ck, st = f"{tmp}/sonar.nnmpi", f"{tmp}/sonar.safetensors"
    subprocess.run([nnmpi, "train", "--data", sonar, "--hidden", "60", "--normalize", "zscore",
                    "--epochs", "50", "--out", ck], check=True, capture_output=True)
    subprocess.run([nnmpi, "export", "--model", ck, "--out", st], check=True, capture_output=True)
    model, (offset, scale) = torch_from_safetensors(st)
    x = np.loadtxt(sonar, delimiter=",", usecols=range(60), dtype=np.float32)
    with torch.no_grad():
        p1 = model(torch.from_numpy((x - offset) * scale)).numpy()[:, 0]
    ours = nnmpi_predict(ck, sonar, [])
    results.append(("Sonar 60-60-1 (nnmpi -> PyTorch), 208 samples", float(np.abs(ours[:, 1] - p1).max())))
    # 784-1024-1024-10: random PyTorch weights, imported by nnmpi.
    weights = random_weights([784, 1024, 1024, 10], seed=5)
    tensors = {}
    for i, (w, b) in enumerate(weights):
        tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w, b
    meta = {"nnmpi.activations": "relu,relu,softmax", "nnmpi.task": "classification",
            "nnmpi.classes": json.dumps([str(c) for c in range(10)])}
    save_file(tensors, f"{tmp}/mnist.safetensors", metadata=meta)
    subprocess.run([nnmpi, "import", "--in", f"{tmp}/mnist.safetensors", "--out", f"{tmp}/mnist.nnmpi"],
                   check=True, capture_output=True)
    x = np.random.default_rng(9).uniform(0, 1, (256, 784)).astype(np.float32)
    np.savetxt(f"{tmp}/x.csv", x, delimiter=",", fmt="%.9g")
    model = torch_model(weights, "relu", "softmax").eval()
    with torch.no_grad():
        p2 = model(torch.from_numpy(x)).numpy()
    ours = nnmpi_predict(f"{tmp}/mnist.nnmpi", f"{tmp}/x.csv", ["--label-col", "none", "--header", "no"])
    results.append(("784-1024-1024-10 softmax (PyTorch -> nnmpi), 256 samples", float(np.abs(ours - p2).max())))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--nnmpi", default=str(ROOT / "target" / "release" / "nnmpi"))
    ap.add_argument("--threads", default="1,2", help="thread counts to compare at (default 1,2)")
    ap.add_argument("--only", choices=["interop", "timing"], help="run one part only")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for results.md and results.json")
    a = ap.parse_args()
    if a.worker:
        return worker(*a.worker)
    if not Path(a.nnmpi).exists():
        sys.exit(f"{a.nnmpi} not found: build it first (cargo build --release)")
    report = {"machine": f"{cpu_model()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d %H:%M"), "interop": [], "timing": []}
    lines = []
    if a.only != "timing":
        if not (have("torch") and have("safetensors")):
            print("interop: skipped (needs torch and safetensors)")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                for name, diff in interop(a.nnmpi, tmp):
                    verdict = "PASS" if diff <= 1e-5 else "FAIL"
                    print(f"interop {verdict}: {name}: max |nnmpi - PyTorch| = {diff:.3g}")
                    report["interop"].append(dict(name=name, max_abs_diff=diff, passed=diff <= 1e-5))
            lines += ["| interop | max abs difference | |", "|---|---|---|"]
            lines += [f"| {r['name']} | {r['max_abs_diff']:.3g} | {'pass' if r['passed'] else 'FAIL'} |"
                      for r in report["interop"]]
            lines.append("")
    if a.only != "interop":
        peers = [p for p in PEERS if have(MODULE[p])]
        for p in sorted(set(PEERS) - set(peers)):
            print(f"{p}: not installed, skipped")
        cases = a.cases.split(",") if a.cases else list(CASES)
        header = ["case", "threads", "nnmpi"] + peers + ["best peer / nnmpi"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for case in cases:
            for t in map(int, a.threads.split(",")):
                row = dict(case=case, threads=t, nnmpi=run_nnmpi(a.nnmpi, case, t))
                for p in peers:
                    row[p] = run_peer(p, case, t)
                times = [row[p] for p in peers if row[p] is not None]
                row["ratio"] = min(times) / row["nnmpi"] if times else None
                report["timing"].append(row)
                cells = [case, str(t)] + [fmt_ms(row[k]) for k in ["nnmpi"] + peers]
                cells.append(f"{row['ratio']:.2f}x" if row["ratio"] else "-")
                lines.append("| " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(f"Measured {report['date']} on {report['machine']}.\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")


def cpu_model():
    """The CPU's model name, family and model (lscpu's), e.g. 'AMD EPYC ..., family 26, model 2'."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        field = lambda k: next(l.split(":", 1)[1].strip() for l in info if l.split(":")[0].strip() == k)
        return f"{field('model name')}, family {field('cpu family')}, model {field('model')}"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def fmt_ms(ms):
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1e3:.2f} s"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1e3:.2f} µs"


if __name__ == "__main__":
    main()
