#!/usr/bin/env python3
"""How `nnmpi sdnn` grows with the network's size: generated stand-in networks of the
GraphChallenge's shape (N neurons, L layers, 32 connections in and out of every neuron,
weights 1/16, the challenge's bias for N) on generated binary inputs (each input's density
drawn from [|bias| - 0.1, |bias|], the default of `--generate`).

Two parts, in one sitting:
  * time against L and N (1 thread): every N of --neurons for every L of --layers;
  * 1 and 2 threads, 1 and 2 ranks for N x 120 with --samples inputs.
Every figure is the median of --reps timed inferences (the slowest rank's, as `sdnn` reports).
Writes a Markdown table to stdout and the plot of time against L (one line per N) as SVG.
Needs only Python 3 and a release build (and mpirun for the ranks):

    cargo build --release
    python3 benches/compare/sdnn_scaling.py   # plot: benches/compare/results/sdnn-scaling.svg
"""

import argparse
import json
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run(nnmpi, neurons, layers, samples, reps, threads=1, ranks=None):
    """One `nnmpi sdnn --generate` run; returns its JSON report."""
    cmd = [nnmpi, "--threads", str(threads), "sdnn", "--generate", "--neurons", str(neurons),
           "--layers", str(layers), "--samples", str(samples), "--reps", str(reps), "--json"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if ranks:
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(ranks),
               "-x", f"RAYON_NUM_THREADS={threads}", *cmd]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def svg_plot(series, path, title):
    """A line plot of seconds against layers, one line per series (in the order given),
    log-scaled seconds."""
    import math

    w, h, left, right, top, bottom = 640, 400, 70, 130, 40, 50
    xs = sorted({x for pts in series.values() for x, _ in pts})
    ys = [y for pts in series.values() for _, y in pts]
    lo, hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    hi = max(hi, lo + 1)

    def px(x):
        return left + (x - xs[0]) / max(xs[-1] - xs[0], 1) * (w - left - right)

    def py(y):
        return top + (hi - math.log10(y)) / (hi - lo) * (h - top - bottom)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for e in range(lo, hi + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{left}" y1="{y}" x2="{w - right}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{10.0 ** e:g} s</text>')
    for x in xs:
        out.append(f'<line x1="{px(x)}" y1="{top}" x2="{px(x)}" y2="{h - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{px(x)}" y="{h - bottom + 16}" text-anchor="middle">{x}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">layers (L)</text>')
    out.append(f'<text x="16" y="{(top + h - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + h - bottom) / 2})">inference seconds (log)</text>')
    for k, (name, pts) in enumerate(series.items()):
        c = colours[k % len(colours)]
        line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>')
        ly = top + 20 + 18 * k
        out.append(f'<line x1="{w - right + 12}" y1="{ly}" x2="{w - right + 32}" y2="{ly}" '
                   f'stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{w - right + 38}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nnmpi", default=str(ROOT / "target" / "release" / "nnmpi"))
    ap.add_argument("--neurons", default="1024,4096,16384")
    ap.add_argument("--layers", default="30,60,120,240")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "sdnn-scaling.svg"))
    a = ap.parse_args()
    neurons = [int(n) for n in a.neurons.split(",")]
    layers = [int(l) for l in a.layers.split(",")]

    print(f"Generated stand-ins, {a.samples} inputs; medians of {a.reps} inferences\n")
    print("| N | L | edges | 1 thread (s) | edges/s | distinct columns at layers 1-8 | categories |")
    print("|---|---|---|---|---|---|---|")
    series = {}
    for n in neurons:
        for l in layers:
            r = run(a.nnmpi, n, l, a.samples, a.reps)
            series.setdefault(f"N = {n}", []).append((l, r["seconds"]))
            print(f"| {n} | {l} | {r['edges']} | {r['seconds']:.3f} | {r['edges_per_second']:.3e} "
                  f"| {' '.join(map(str, r.get('distinct', [])[:8]))} | {r['categories']} |", flush=True)
    svg_plot(series, a.out, f"nnmpi sdnn on generated networks, {a.samples} inputs, 1 thread")
    print(f"\n(plot: {a.out})\n")

    print("| N x 120 | 1 thread | 2 threads | 2 ranks x 1 thread | 2 threads / 1 | 2 ranks / 1 |")
    print("|---|---|---|---|---|---|")
    for n in neurons:
        if n < 4096:
            continue
        t1 = run(a.nnmpi, n, 120, a.samples, a.reps)
        t2 = run(a.nnmpi, n, 120, a.samples, a.reps, threads=2)
        r2 = run(a.nnmpi, n, 120, a.samples, a.reps, ranks=2)
        cell = lambda r: f"{r['seconds']:.3f} s, {r['edges_per_second']:.2e}/s"
        print(f"| {n} | {cell(t1)} | {cell(t2)} | {cell(r2)} | "
              f"{t1['seconds'] / t2['seconds']:.2f}x | {t1['seconds'] / r2['seconds']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
