"""GPU benchmark of the ``cuda`` backend against ``torch.sort`` (issue 3's performance table).

Measures, with CUDA events after a warm-up, the median of repeated runs of:

* ``torch.sort`` (values + indices) of a float32 vector and ``wsprox.prox(..., backend="cuda")``
  end to end on the same torch tensor, and their ratio, at d = 1e6, 1e7, 1e8 on Gaussian
  weights with lam = 1e-2 and lam = 1.0 and on the adversarial ramp;
* latency for d <= 1e5;
* batched 1000 x 1e4 (``axis=1``) against ``torch.sort(dim=-1)``;
* peak device memory beyond input and output at the largest d (bytes per element);
* ``cuda-imminent`` for comparison, each run under a timeout;
* design variants of the ``cuda`` backend on Gaussian weights (lam = 1e-2) at the large
  sizes: the unsort direct or partitioned, the tile stage chunked (``CHUNK``) or one
  sequential PAVA per tile, so that one GPU run tells which to keep (``--no-variants``
  skips them);
* where the host time of a small call goes: ``cProfile`` over ``--profile-calls`` calls
  at the largest latency size (the functions with the most own time, per call), since at
  d <= 1e5 the Python side of the launches, wraps and allocations can cost more than the
  GPU work.

Shows progress (tqdm if installed, else a line per step) and rewrites the JSON at the
path given on the command line after every step (``meta.complete`` is false until the
end), so a run cut short by a time limit keeps what it measured. Prints a table at the
end; ``--plot PATH`` also draws the ratios to ``torch.sort`` against d, and ``--replot``
redraws and reprints an existing JSON without measuring (for a machine with matplotlib
when the GPU machine has none). ``--dry-run`` uses tiny sizes and works on numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``, no torch needed: it times with
``time.perf_counter`` then).

Usage::

    python asv_bench/bench_cuda.py results.json --plot results.png
    python asv_bench/bench_cuda.py results.json --replot --plot results.png
    NUMBA_ENABLE_CUDASIM=1 python asv_bench/bench_cuda.py --dry-run /tmp/out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="where to write the JSON results")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes; runs on the CUDA simulator")
    p.add_argument("--sizes", type=float, nargs="*", default=[1e6, 1e7, 1e8], help="large d values")
    p.add_argument("--small-sizes", type=float, nargs="*", default=[1e3, 1e4, 1e5], help="latency d values")
    p.add_argument("--repeat", type=int, default=20, help="timed runs per case (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per case")
    p.add_argument("--imminent-timeout", type=float, default=30.0, help="seconds allowed per cuda-imminent run")
    p.add_argument("--batch", type=int, nargs=2, default=[1000, 10000], metavar=("N", "D"), help="batched shape")
    p.add_argument("--no-variants", dest="variants", action="store_false", help="skip the design variants")
    p.add_argument("--profile-calls", type=int, default=200, help="calls profiled on the host (0: none)")
    p.add_argument("--plot", metavar="PATH", help="also draw the ratios to torch.sort against d (PNG, PDF, SVG)")
    p.add_argument(
        "--replot", action="store_true", help="measure nothing: print and --plot the results already in OUTPUT"
    )
    return p


class _Timer:
    """CUDA-event timing with torch when available, else wall clock after a synchronize."""

    def __init__(self):
        try:
            import torch

            self.torch = torch if torch.cuda.is_available() else None
        except ImportError:
            self.torch = None

    def time(self, fn, repeat, warmup, timeout=None):
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        start_all = time.perf_counter()
        for _ in range(repeat):
            if self.torch is not None:
                a = self.torch.cuda.Event(enable_timing=True)
                b = self.torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                self.sync()
                times.append(1e3 * (time.perf_counter() - t0))
            if timeout is not None and time.perf_counter() - start_all > timeout:
                break
        return statistics.median(times)

    def sync(self):
        if self.torch is not None:
            self.torch.cuda.synchronize()
        else:
            from numba import cuda

            cuda.synchronize()


def _family(name, d, lam, np):
    rng = np.random.default_rng(0)
    if name == "gaussian":
        return rng.standard_normal(d, dtype=np.float32)
    half = d // 2
    a = 2.25 * lam / d
    return np.concatenate([np.zeros(d - half), a * np.arange(1, half + 1)]).astype(np.float32)


def _to_device(w, timer):
    if timer.torch is not None:
        return timer.torch.from_numpy(w).cuda()
    from numba import cuda

    return cuda.to_device(w)


def _sort_fn(x, timer, dim=-1):
    if timer.torch is not None:
        return lambda: timer.torch.sort(x, dim=dim)
    return None


def _run_imminent(x, lam, timeout, timer):
    """One cuda-imminent run, stopped by a deadline ``timeout`` seconds on (checked once per round); ms or None."""
    from wsprox.solvers import cuda_imminent

    rows = x.reshape(1, -1)
    t0 = time.perf_counter()
    try:
        cuda_imminent.solve(rows, lam, 0.0, False, deadline=t0 + timeout)
        timer.sync()
    except TimeoutError:
        timer.sync()
        return None, f"timeout (> {timeout:g} s)"
    except Exception as exc:  # noqa: BLE001 - report, do not abort the table
        return None, repr(exc)
    return 1e3 * (time.perf_counter() - t0), None


def _time_variants(args, timer, np, sizes):
    """prox time of each (unsort, tile stage) design at ``sizes``; the backend's tunables restored."""
    import wsprox
    from wsprox.solvers import cuda_backend

    saved = cuda_backend.UNSORT, cuda_backend.CHUNK
    designs = {
        f"{unsort}/{'chunked' if chunked else 'sequential'}": (unsort, saved[1] if chunked else cuda_backend.TILE)
        for unsort in ("direct", "partitioned")
        for chunked in (True, False)
    }
    out = []
    try:
        for d in sizes:
            x = _to_device(_family("gaussian", d, 1e-2, np), timer)
            times = {}
            for name, (unsort, chunk) in designs.items():
                cuda_backend.UNSORT, cuda_backend.CHUNK = unsort, chunk
                times[name] = timer.time(lambda x=x: wsprox.prox(x, 1e-2, backend="cuda"), args.repeat, args.warmup)
            out.append(dict(d=d, ms=times))
    finally:
        cuda_backend.UNSORT, cuda_backend.CHUNK = saved
    return out


def _host_profile(x, d, lam, calls, timer, top=20):
    """cProfile of ``calls`` prox calls on ``x`` (warm): host wall time and the top functions by own time."""
    import cProfile
    import pstats

    import wsprox

    wsprox.prox(x, lam, backend="cuda")
    timer.sync()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(calls):
        wsprox.prox(x, lam, backend="cuda")
    prof.disable()
    timer.sync()
    wall_us = 1e6 * (time.perf_counter() - t0) / calls
    stats = pstats.Stats(prof).stats
    rows = []
    for (path, line, name), (_, ncalls, tottime, cumtime, _) in stats.items():
        rows.append(
            dict(
                function=f"{path.rsplit('/', 1)[-1]}:{line}({name})",
                calls_per_call=ncalls / calls,
                own_us=1e6 * tottime / calls,
                cum_us=1e6 * cumtime / calls,
            )
        )
    rows.sort(key=lambda r: -r["own_us"])
    return dict(d=d, calls=calls, wall_us_per_call_profiled=wall_us, top=rows[:top])


def _device_name(timer):
    """The GPU's name (torch's, else numba's), or ``"simulator"``."""
    if timer.torch is not None:
        return timer.torch.cuda.get_device_name()
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        return "simulator"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


class _Progress:
    """tqdm over the benchmark's steps when tqdm is installed, else one line per step (the device image may lack it)."""

    def __init__(self, total):
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="case", file=sys.stderr)
        except ImportError:
            self.bar = None
        self.total, self.done = total, 0

    def step(self, label):
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(label)
            self.bar.update()
        else:
            print(f"[{self.done}/{self.total}] {label}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _dry_run_settings(args):
    """Tiny sizes and tiles, so that ``--dry-run`` exercises every step on the simulator in seconds."""
    from wsprox.solvers import cuda_backend, cuda_imminent

    args.sizes = [64]
    args.small_sizes = [16]
    args.repeat = 2
    args.warmup = 1
    args.batch = [3, 16]
    args.profile_calls = min(args.profile_calls, 2)
    cuda_backend.TILE = 8
    cuda_backend.CHUNK = 2
    cuda_backend.UNSORT_WINDOW = 4
    cuda_backend.UNSORT_CHUNK = 8
    cuda_backend.THREADS_PER_BLOCK = 8
    cuda_backend.FUSED_LEVEL_THREADS = 8
    cuda_backend.SCAN_THREADS = 8
    cuda_imminent.THREADS_PER_BLOCK = 8


CASES = [("gaussian", 1e-2), ("gaussian", 1.0), ("adversarial_ramp", 1.0)]


def _vector_row(fam, lam, d, args, timer, np):
    """One table row: sort, prox, their ratio, cuda-imminent and (at the largest d) peak memory."""
    import wsprox

    x = _to_device(_family(fam, d, lam, np), timer)
    sort = _sort_fn(x, timer)
    t_sort = timer.time(sort, args.repeat, args.warmup) if sort else None
    t_prox = timer.time(lambda: wsprox.prox(x, lam, backend="cuda"), args.repeat, args.warmup)
    t_imm, note = (None, "skipped (d > 1e6)")
    if d <= 10**6 or args.dry_run:
        t_imm, note = _run_imminent(x, lam, args.imminent_timeout, timer)
    peak = None
    if timer.torch is not None and d == int(max(args.sizes)):
        torch = timer.torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        y = wsprox.prox(x, lam, backend="cuda")
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base - y.numel() * y.element_size()) / d
        del y
    return _row(f"{fam} lam={lam:g}", d, t_sort, t_prox, imminent_ms=t_imm, imminent_note=note, peak=peak)


def _batched_row(args, timer, np):
    import wsprox

    n, d = args.batch
    xb = _to_device(np.random.default_rng(1).standard_normal((n, d)).astype(np.float32), timer)
    sort = _sort_fn(xb, timer)
    t_sort = timer.time(sort, args.repeat, args.warmup) if sort else None
    t_prox = timer.time(lambda: wsprox.prox(xb, 1e-2, axis=1, backend="cuda"), args.repeat, args.warmup)
    return _row(f"batched {n}x{d} axis=1", d, t_sort, t_prox)


def _row(case, d, sort_ms, prox_ms, *, imminent_ms=None, imminent_note=None, peak=None):
    """One row of the table (and of the JSON); ``ratio`` is prox / sort where the sort was timed."""
    return dict(
        case=case,
        d=d,
        sort_ms=sort_ms,
        prox_ms=prox_ms,
        ratio=(prox_ms / sort_ms) if sort_ms else None,
        imminent_ms=imminent_ms,
        imminent_note=imminent_note,
        peak_extra_bytes_per_element=peak,
    )


def _print_tables(record):
    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    print(f"device: {record['meta']['device']}")
    print(f"{'case':<28} {'d':>10} {'sort ms':>10} {'prox ms':>10} {'ratio':>7} {'imminent ms':>12} {'B/elem':>7}")
    for r in record["rows"]:
        imminent = fmt(r["imminent_ms"], ".1f") if r["imminent_ms"] is not None else (r["imminent_note"] or "-")
        print(
            f"{r['case']:<28} {r['d']:>10} {fmt(r['sort_ms']):>10} {fmt(r['prox_ms']):>10} {fmt(r['ratio'], '.2f'):>7} "
            f"{imminent:>12} {fmt(r['peak_extra_bytes_per_element'], '.1f'):>7}"
        )
    variants = record["variants"]
    if variants:
        print(f"\nvariants (gaussian lam=1e-2), prox ms: {'d':>10} " + " ".join(f"{k:>22}" for k in variants[0]["ms"]))
        for v in variants:
            print(f"{'':<34} {v['d']:>10} " + " ".join(f"{fmt(t):>22}" for t in v["ms"].values()))
    profile = record["host_profile"]
    if profile:
        print(
            f"\nhost profile, d={profile['d']}: {profile['wall_us_per_call_profiled']:.0f} us per call under cProfile;"
            " own time per call (us), calls per call, function:"
        )
        for r in profile["top"]:
            print(f"{r['own_us']:>10.1f} {r['calls_per_call']:>6.1f}  {r['function']}")


def plot(record, path):
    """prox time / sort time against d (log-log), one line per case, the goal (2x) and aim (1.5x) dashed.

    Batched rows are drawn as single points at their row length; cuda-imminent, where it
    finished, as hollow markers of its ratio to the same sort.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from wsprox._files import save_figure_atomically

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    cases = list(dict.fromkeys(r["case"] for r in record["rows"]))
    for k, case in enumerate(cases):
        rows = [r for r in record["rows"] if r["case"] == case and r["ratio"] is not None]
        if not rows:
            continue
        ax.plot([r["d"] for r in rows], [r["ratio"] for r in rows], "o-", color=f"C{k}", label=case)
        slow = [r for r in rows if r["imminent_ms"] is not None and r["sort_ms"]]
        if slow:
            ratios = [r["imminent_ms"] / r["sort_ms"] for r in slow]
            ax.plot([r["d"] for r in slow], ratios, "o--", mfc="none", color=f"C{k}", label=f"{case}, cuda-imminent")
    ax.axhline(2.0, color="k", ls="--", lw=1, label="goal: 2x torch.sort")
    ax.axhline(1.5, color="0.5", ls=":", lw=1, label="aim: 1.5x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("d (elements per vector)")
    ax.set_ylabel("time / time of torch.sort (CUDA events, median)")
    ax.set_title(f"wsprox cuda backend, float32, end to end\n{record['meta']['device']}", fontsize=9)
    ax.legend(fontsize=7)
    save_figure_atomically(fig, path, dpi=110)


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.replot:
        with open(args.output) as fh:
            record = json.load(fh)
        _print_tables(record)
        plot(record, args.plot)
        return 0
    import numpy as np

    import wsprox
    from wsprox._files import write_atomically

    if args.dry_run:
        _dry_run_settings(args)
    timer = _Timer()
    info = wsprox.backends()["cuda"]
    if not info.available:
        print(f"cuda backend unavailable: {info.reason}", file=sys.stderr)
        return 2
    meta = dict(
        device=_device_name(timer),
        python=platform.python_version(),
        numpy=np.__version__,
        dry_run=args.dry_run,
        repeat=args.repeat,
        warmup=args.warmup,
        complete=False,
    )
    record = dict(meta=meta, rows=[], variants=[], host_profile=None)

    def save():  # after every step, so that a run cut short still leaves what it measured
        write_atomically(args.output, lambda fh: json.dump(record, fh, indent=2))

    sizes = [int(s) for s in args.small_sizes] + [int(s) for s in args.sizes]
    steps = len(sizes) * len(CASES) + 1 + (len(args.sizes) if args.variants else 0) + (args.profile_calls > 0)
    progress = _Progress(steps)
    try:
        for d in sizes:
            for fam, lam in CASES:
                record["rows"].append(_vector_row(fam, lam, d, args, timer, np))
                save()
                progress.step(f"{fam} lam={lam:g} d={d}")
        record["rows"].append(_batched_row(args, timer, np))
        save()
        progress.step("batched")
        if args.variants:
            for d in [int(s) for s in args.sizes]:
                record["variants"].extend(_time_variants(args, timer, np, sizes=[d]))
                save()
                progress.step(f"variants d={d}")
        if args.profile_calls > 0:
            d = int(max(args.small_sizes))
            x = _to_device(_family("gaussian", d, 1e-2, np), timer)
            record["host_profile"] = _host_profile(x, d, 1e-2, args.profile_calls, timer)
            progress.step("host profile")
    finally:
        progress.close()
    meta["complete"] = True
    save()
    _print_tables(record)
    if args.plot:
        plot(record, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
