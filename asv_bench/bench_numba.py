"""Speed of the numba backend against the floors and pipelines named in its issue.

Runs in one process, after a warm-up call that absorbs numba compilation, and reports
medians of repeated runs, the prox and its baseline timed alternately (so that a ratio
compares timings taken under the same machine conditions):

- float32, d = 1e7: the whole prox against ``np.argsort`` of the same array (goal: <= 1x);
- float64, d = 1e6: against ``np.argsort`` (goal: <= 1.3x) and the scipy pipeline
  (sort + ``scipy.optimize.isotonic_regression`` + unsort; goal: faster);
- batched 1000 x 1000 (axis=1): against a Python loop calling the scipy pipeline per row
  (goal: >= 5x faster).

Usage::

    python asv_bench/bench_numba.py [--repeat 7] [--json PATH] [--plot PATH] [--quick]
                                    [--sort auto|radix|numpy]

``--quick`` shrinks the sizes 10x for a smoke run. ``--sort`` forces the backend's sort
engine (default: the one it calibrates for this machine; the table names it). Prints a
table; writes JSON and a bar chart of the ratios when asked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import wsprox
from wsprox._files import save_figure_atomically, write_atomically
from wsprox._machine import machine_info


def paired_median_times(fn_a, fn_b, repeat):
    """Medians of ``repeat`` interleaved timings of two callables (after one warm-up each).

    Interleaving makes both see the same machine conditions (a shared or throttled
    machine drifts in speed between runs), so their ratio is more stable.
    """
    fn_a()  # warm-up: numba compilation, page faults of first allocations
    fn_b()
    times_a, times_b = [], []
    for _ in range(repeat):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return float(np.median(times_a)), float(np.median(times_b))


def sort_engines(requested):
    """The sort engine of each row-length class the run used (what the backend chose or was told)."""
    try:
        from wsprox.solvers._sort_engine import calibration
    except ImportError:  # a wsprox from before the sort engines: always its radix sort
        return {"all": "radix"}
    return {"all": requested} if requested != "auto" else calibration()


def scipy_pipeline(w, lam):
    from scipy.optimize import isotonic_regression

    d = w.size
    order = np.argsort(w)
    z = w[order].astype(np.float64) + lam * (d - 1 - 2 * np.arange(d)) / (d - 1)
    out = np.empty(d)
    out[order] = isotonic_regression(z).x
    return out


def cases(quick):
    scale = 10 if quick else 1
    rng = np.random.default_rng(0)
    w32 = rng.standard_normal(10**7 // scale).astype(np.float32)
    w64 = rng.standard_normal(10**6 // scale)
    batch = rng.standard_normal((1000 // scale, 1000))
    lam = 1e-2
    return [
        {
            "case": f"float32 d={w32.size:.0e}",
            "goal": "prox <= 1.0x argsort",
            "limit": 1.0,
            "prox": lambda: wsprox.prox(w32, lam, backend="numba"),
            "baseline": ("np.argsort", lambda: np.argsort(w32)),
        },
        {
            "case": f"float64 d={w64.size:.0e}",
            "goal": "prox <= 1.3x argsort",
            "limit": 1.3,
            "prox": lambda: wsprox.prox(w64, lam, backend="numba"),
            "baseline": ("np.argsort", lambda: np.argsort(w64)),
        },
        {
            "case": f"float64 d={w64.size:.0e}",
            "goal": "prox faster than scipy pipeline",
            "limit": 1.0,
            "prox": lambda: wsprox.prox(w64, lam, backend="numba"),
            "baseline": ("scipy pipeline", lambda: scipy_pipeline(w64, lam)),
        },
        {
            "case": f"batched {batch.shape[0]}x{batch.shape[1]} axis=1",
            "goal": "prox >= 5x faster than scipy loop",
            "limit": 0.2,
            "prox": lambda: wsprox.prox(batch, lam, axis=1, backend="numba"),
            "baseline": ("scipy pipeline per row", lambda: [scipy_pipeline(row, lam) for row in batch]),
        },
    ]


def plot(rows, machine, engines, path):
    """Bar chart of the ratios (log scale), each goal marked, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [f"{r['case']}\nvs {r['baseline']}" for r in rows]
    y = range(len(rows))
    ax.barh(y, [r["ratio"] for r in rows], color=["tab:green" if r["met"] else "tab:red" for r in rows])
    for i, r in enumerate(rows):
        if "limit" in r:
            ax.plot([r["limit"]] * 2, [i - 0.45, i + 0.45], color="k", lw=2)
    ax.set_yticks(list(y), labels)
    ax.set_xscale("log")
    ax.set_xlabel("time of wsprox.prox / time of baseline (lower is better; black: goal)")
    ax.set_title(f"numba backend\n{machine}; sort engine: {engines}", fontsize=8)
    fig.tight_layout()
    save_figure_atomically(fig, path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--plot", help="write a bar chart of prox/baseline ratios here (PNG)")
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes (smoke run)")
    parser.add_argument("--sort", choices=("auto", "radix", "numpy"), default="auto", help="sort engine")
    args = parser.parse_args(argv)
    os.environ["WSPROX_SORT"] = args.sort
    from tqdm import tqdm

    rows = []
    for case in tqdm(cases(args.quick), desc="bench_numba", unit="case"):
        name, baseline = case["baseline"]
        t_prox, t_base = paired_median_times(case["prox"], baseline, args.repeat)
        ratio = t_prox / t_base
        rows.append(
            {
                "case": case["case"],
                "baseline": name,
                "prox_s": t_prox,
                "baseline_s": t_base,
                "ratio": ratio,
                "goal": case["goal"],
                "limit": case["limit"],
                "met": bool(ratio <= case["limit"]),
            }
        )
    info = machine_info()
    machine = f"{info['cpu']}, {info['cores']} cores, {platform.system()}, numpy {info['versions']['numpy']}"
    engines = sort_engines(args.sort)
    header = f"{'case':<28}{'baseline':<24}{'prox [s]':>10}{'base [s]':>10}{'ratio':>8}  goal"
    print(f"\nnumba backend, {machine}, medians of {args.repeat} runs after a warm-up")
    print(f"sort engine: {engines}\n")
    print(header)
    print("-" * len(header))
    for r in rows:
        mark = "met" if r["met"] else "NOT MET"
        print(
            f"{r['case']:<28}{r['baseline']:<24}{r['prox_s']:>10.4f}{r['baseline_s']:>10.4f}"
            f"{r['ratio']:>8.2f}  {r['goal']} ({mark})"
        )
    if args.json:
        record = {
            "machine": machine,
            "machine_info": info,
            "repeat": args.repeat,
            "sort": engines,
            "results": rows,
        }
        write_atomically(args.json, lambda fh: json.dump(record, fh, indent=2))
    if args.plot:
        plot(rows, machine, engines, args.plot)
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
