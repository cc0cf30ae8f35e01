"""Calls from Python, side by side: nnmpi's package, ONNX Runtime's Python API and PyTorch
eager, on the same weights, each framework in a process of its own (no framework's spinning
threads take another's cores), in alternating rounds (medians of the rounds' medians).

    /tmp/cmp-env/bin/pip install ./python          # the package, into compare.py's environment
    /tmp/cmp-env/bin/python benches/compare/python_calls.py [--rounds 5] [--json out.json]

Cases:
- one sample through 60-3-1 (sigmoid hidden and output: the seed's network): nnmpi's
  `predict` (class names) and `outputs`, ONNX Runtime's `run` and its pre-bound
  `run_with_iobinding`, PyTorch's `model(x)` under `no_grad`;
- a batch of 1024 through 784-1024-1024-10 (ReLU): the same calls, next to the Rust figure of
  `nnmpi bench` for the same network and batch (the package should add nothing measurable).

Every framework runs with the same thread count (1, then 2). The frameworks that are not
installed are skipped. NNMPI_BIN names the command for the Rust figure (default: the
repository's release build).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare import ROOT, cpu_model, have, median_time, onnx_model, random_weights, torch_model  # noqa: E402

CASES = {
    "single 60-3-1": dict(layers=[60, 3, 1], act="sigmoid", out="sigmoid", batch=1),
    "784-1024-1024-10 b1024": dict(layers=[784, 1024, 1024, 10], act="relu", out="identity",
                                   batch=1024),
}


def nnmpi_model(weights, spec, folder):
    """The weights as an nnmpi model (imported from safetensors, no normaliser)."""
    import nnmpi
    from safetensors.numpy import save_file
    tensors = {}
    for i, (w, b) in enumerate(weights):
        tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w, b
    acts = [spec["act"]] * (len(weights) - 1) + [spec["out"]]
    classifier = spec["out"] == "sigmoid"
    meta = {"nnmpi.activations": ",".join(acts),
            "nnmpi.task": "classification" if classifier else "regression"}
    if classifier:
        meta["nnmpi.classes"] = json.dumps(["no", "yes"])
    path = Path(folder) / "model.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return nnmpi.Model.import_safetensors(path)


def calls(framework, case, threads, folder):
    """name -> zero-argument callable of `framework` for this case and thread count."""
    import numpy as np
    spec = CASES[case]
    weights = random_weights(spec["layers"])
    x = np.random.default_rng(1).uniform(-1, 1, (spec["batch"], spec["layers"][0])).astype(
        np.float32)
    out = {}
    if framework == "nnmpi":
        model = nnmpi_model(weights, spec, folder)
        if spec["out"] == "sigmoid":
            out["nnmpi predict"] = lambda: model.predict(x, threads)
        out["nnmpi outputs"] = lambda: model.outputs(x, threads)
    elif framework == "ort":
        import onnxruntime as ort
        proto, name = onnx_model(weights, spec["act"], spec["out"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(proto, opts, providers=["CPUExecutionProvider"])
        out["ort run"] = lambda: sess.run([name], {"x": x})
        binding = sess.io_binding()
        binding.bind_cpu_input("x", x)
        binding.bind_output(name)
        out["ort run_with_iobinding"] = lambda: sess.run_with_iobinding(binding)
    elif framework == "torch":
        import torch
        torch.set_num_threads(threads)
        net = torch_model(weights, spec["act"], spec["out"]).eval()

        def torch_call():
            with torch.no_grad():
                return net(torch.from_numpy(x)).numpy()
        out["torch eager"] = torch_call
    return out


def worker(framework, case, threads):
    """Prints the median seconds of each of `framework`'s calls (one process per framework,
    so that no framework's spinning threads take another's cores)."""
    with tempfile.TemporaryDirectory() as folder:
        fns = calls(framework, case, threads, folder)
        small = CASES[case]["batch"] == 1
        print(json.dumps({name: median_time(fn, min_seconds=0.3 if small else 1.0)
                          for name, fn in fns.items()}))


FRAMEWORKS = {"nnmpi": "nnmpi", "ort": "onnxruntime", "torch": "torch"}


def run_worker(framework, case, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, __file__, "--worker", framework, case, str(threads)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"  {framework} failed on {case}: {done.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def rust_ms(case, threads):
    """`nnmpi bench`'s median for the case (the engine without Python)."""
    spec = CASES[case]
    binary = os.environ.get("NNMPI_BIN", str(ROOT / "target" / "release" / "nnmpi"))
    args = [binary, "--threads", str(threads), "bench", "--json", "--layers",
            ",".join(map(str, spec["layers"])), "--batch", str(spec["batch"]), "--activation",
            spec["act"], "--output-activation", spec["out"], "--reps", "15"]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["median_ms"]


def check_same_outputs():
    """nnmpi's package and PyTorch give the same outputs on every case (within rounding)."""
    import numpy as np
    if not have("torch"):
        return
    import torch
    with tempfile.TemporaryDirectory() as folder:
        for case, spec in CASES.items():
            weights = random_weights(spec["layers"])
            x = np.random.default_rng(1).uniform(-1, 1, (spec["batch"], spec["layers"][0]))
            x = x.astype(np.float32)
            ours = nnmpi_model(weights, spec, folder).outputs(x)
            with torch.no_grad():
                theirs = torch_model(weights, spec["act"], spec["out"]).eval()(
                    torch.from_numpy(x)).numpy()
            diff = float(np.abs(ours - theirs).max())
            assert diff < 1e-4, (case, diff)
            print(f"{case}: nnmpi and PyTorch outputs differ by at most {diff:.2e}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        framework, case, threads = args.worker
        return worker(framework, case, int(threads))
    results = {"cpu": cpu_model(), "rounds": args.rounds, "cases": {}}
    print(f"CPU: {results['cpu']}; medians of {args.rounds} alternating rounds")
    check_same_outputs()
    frameworks = [f for f, module in FRAMEWORKS.items() if have(module)]
    for threads in map(int, args.threads.split(",")):
        for case in CASES:
            small = CASES[case]["batch"] == 1
            times = {}
            for _ in range(args.rounds):
                for framework in frameworks:
                    for name, seconds in run_worker(framework, case, threads).items():
                        times.setdefault(name, []).append(seconds)
                if not small:
                    times.setdefault("nnmpi bench (Rust)", []).append(rust_ms(case, threads) / 1e3)
            row = {name: statistics.median(t) for name, t in times.items()}
            key = f"{case}, {threads} thread{'s' if threads > 1 else ''}"
            results["cases"][key] = row
            print(f"\n{key}")
            for name, s in sorted(row.items(), key=lambda kv: kv[1]):
                shown = f"{s * 1e6:9.2f} us" if small else f"{s * 1e3:9.3f} ms"
                print(f"  {name:28s}{shown}")
            if not small:
                ratio = row["nnmpi outputs"] / row["nnmpi bench (Rust)"]
                print(f"  package / Rust: {ratio:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
