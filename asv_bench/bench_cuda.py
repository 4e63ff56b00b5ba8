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

Prints a table and writes JSON to the path given on the command line. ``--dry-run`` uses
tiny sizes and works on numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no torch
needed: it times with ``time.perf_counter`` then).

Usage::

    python asv_bench/bench_cuda.py results.json
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
    """One cuda-imminent run bounded by a round limit derived from the timeout; ms or None."""
    import wsprox

    t0 = time.perf_counter()
    try:
        wsprox.prox(x, lam, backend="cuda-imminent")
        timer.sync()
    except Exception as exc:  # noqa: BLE001 - report, do not abort the table
        return None, repr(exc)
    elapsed = time.perf_counter() - t0
    if elapsed > timeout:
        return None, f"timeout (> {timeout:.0f} s)"
    return 1e3 * elapsed, None


def _time_variants(args, timer, np):
    """prox time of each (unsort, tile stage) design at the large sizes; the backend's tunables restored."""
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
        for d in [int(s) for s in args.sizes]:
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


def main(argv=None):
    args = _parser().parse_args(argv)
    import numpy as np

    import wsprox
    from wsprox._files import write_atomically

    if args.dry_run:
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
    timer = _Timer()
    info = wsprox.backends()["cuda"]
    if not info.available:
        print(f"cuda backend unavailable: {info.reason}", file=sys.stderr)
        return 2
    device = "simulator"
    if timer.torch is not None:
        device = timer.torch.cuda.get_device_name()
    rows = []
    cases = [("gaussian", 1e-2), ("gaussian", 1.0), ("adversarial_ramp", 1.0)]
    for d in [int(s) for s in args.small_sizes] + [int(s) for s in args.sizes]:
        for fam, lam in cases:
            w = _family(fam, d, lam, np)
            x = _to_device(w, timer)
            sort = _sort_fn(x, timer)
            t_sort = timer.time(sort, args.repeat, args.warmup) if sort else None
            t_prox = timer.time(lambda x=x, lam=lam: wsprox.prox(x, lam, backend="cuda"), args.repeat, args.warmup)
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
            rows.append(
                dict(
                    case=f"{fam} lam={lam:g}",
                    d=d,
                    sort_ms=t_sort,
                    prox_ms=t_prox,
                    ratio=(t_prox / t_sort) if t_sort else None,
                    imminent_ms=t_imm,
                    imminent_note=note,
                    peak_extra_bytes_per_element=peak,
                )
            )
    n, d = args.batch
    wb = np.random.default_rng(1).standard_normal((n, d)).astype(np.float32)
    xb = _to_device(wb, timer)
    sort = _sort_fn(xb, timer)
    t_sort = timer.time(sort, args.repeat, args.warmup) if sort else None
    t_prox = timer.time(lambda: wsprox.prox(xb, 1e-2, axis=1, backend="cuda"), args.repeat, args.warmup)
    rows.append(
        dict(
            case=f"batched {n}x{d} axis=1",
            d=d,
            sort_ms=t_sort,
            prox_ms=t_prox,
            ratio=(t_prox / t_sort) if t_sort else None,
            imminent_ms=None,
            imminent_note=None,
            peak_extra_bytes_per_element=None,
        )
    )

    variants = _time_variants(args, timer, np) if args.variants else []
    profile = None
    if args.profile_calls > 0:
        d = int(max(args.small_sizes))
        profile = _host_profile(_to_device(_family("gaussian", d, 1e-2, np), timer), d, 1e-2, args.profile_calls, timer)

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    print(f"device: {device}")
    print(f"{'case':<28} {'d':>10} {'sort ms':>10} {'prox ms':>10} {'ratio':>7} {'imminent ms':>12} {'B/elem':>7}")
    for r in rows:
        print(
            f"{r['case']:<28} {r['d']:>10} {fmt(r['sort_ms']):>10} {fmt(r['prox_ms']):>10} {fmt(r['ratio'], '.2f'):>7} "
            f"{fmt(r['imminent_ms'], '.1f') if r['imminent_ms'] is not None else (r['imminent_note'] or '-'):>12} "
            f"{fmt(r['peak_extra_bytes_per_element'], '.1f'):>7}"
        )
    if variants:
        print(f"\nvariants (gaussian lam=1e-2), prox ms: {'d':>10} " + " ".join(f"{k:>22}" for k in variants[0]["ms"]))
        for v in variants:
            print(f"{'':<34} {v['d']:>10} " + " ".join(f"{fmt(t):>22}" for t in v["ms"].values()))
    if profile:
        print(
            f"\nhost profile, d={profile['d']}: {profile['wall_us_per_call_profiled']:.0f} us per call under cProfile;"
            " own time per call (us), calls per call, function:"
        )
        for r in profile["top"]:
            print(f"{r['own_us']:>10.1f} {r['calls_per_call']:>6.1f}  {r['function']}")
    meta = dict(
        device=device,
        python=platform.python_version(),
        numpy=np.__version__,
        dry_run=args.dry_run,
        repeat=args.repeat,
        warmup=args.warmup,
    )
    record = dict(meta=meta, rows=rows, variants=variants, host_profile=profile)
    write_atomically(args.output, lambda fh: json.dump(record, fh, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
