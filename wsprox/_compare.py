"""The engine of ``wsprox compare``: time and check solvers, each in its own worker process.

Every solver ("runner": a registered wsprox backend, an external baseline of
:mod:`wsprox._baselines`, or the sort that is the floor of its device) runs in a worker
process started with the ``spawn`` method (with SIGINT ignored, so that Ctrl-C reaches only
the parent, which kills the workers). The worker imports what it needs and calls the solver
once on a tiny input of the run's dtype (first imports, compilation for the dtype; untimed,
bounded by :data:`PHASE_TIMEOUT`), then serves one case (family, d) at a time: it generates
the input itself (so big vectors never cross the pipe), and for a runner with
``warm_each_case`` (those that compile or calibrate per size: the numba backend compiles
the code of rows longer than 1024 at the first such row and calibrates its sort at the
first row of each length class, the cuda backend
switches kernels with d, and a backend of ``--import`` may do anything) first calls the
solver once more, untimed, on the case's own input. Then it times up to ``repeat`` calls,
reporting each time as soon as it is measured, checks its last result with
:func:`wsprox.certify`, counts its clusters and sends it back.

The parent waits for each timed call at most ``timeout`` seconds, and for the untimed call
on the case's input at most ``timeout + warmup_allowance`` seconds; past that it kills the
worker (numba and GPU code cannot be interrupted in-process), reports the case as a timeout
and starts a fresh worker for the next case. Larger sizes of the same family are then not
run on that runner (status ``"skipped"``).

The reference of a case is the cvxpy result where cvxpy is installed and
``d <= CVXPY_QUICK_MAX_D`` and that result passes the certificate, else the float64 numba
result (of the same, possibly float32-rounded, input); it is reused from the timed runs
when they computed it, else computed by a worker of its own. Warnings raised in a worker
(such as cvxpy's on a row it cannot certify) go to the result's ``note`` instead of the
terminal.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import wsprox

from ._baselines import BASELINES
from ._families import family_seed, make_input
from ._files import save_figure_atomically
from ._machine import machine_info

__all__ = ["Runner", "Result", "Settings", "Interrupted", "select_runners", "run", "machine_info", "format_table"]

#: Largest d at which cvxpy runs when ``--backends`` does not name it, and at which it is the reference.
#: One cvxpy solve takes about 0.4 s at d = 200, 4 s at d = 500 and 25 s (2.5 GB) at d = 1000.
CVXPY_QUICK_MAX_D = 200
#: Stop repeating a runner on a case once its timed calls have taken this long (seconds).
TIME_BUDGET = 1.0
#: Size of the worker's first warm-up input (a Gaussian vector of the run's dtype).
WARMUP_SIZE = 64
#: Default extra time (seconds) given to the untimed call on a case's input, on top of the
#: timeout: compilation and calibration happen there (the numba code of rows above 1024
#: elements compiled in about 5 s on a 2-core AMD EPYC machine with an empty cache; CUDA
#: kernels can take longer).
WARMUP_ALLOWANCE = 60.0
#: Registered backends whose compiled code and tuning depend only on the dtype, so that the
#: worker's first warm-up covers every size: cvxpy builds and solves a fresh problem per
#: call (nothing compiled), cuda-imminent launches the same numba.cuda kernels at every
#: size after a library sort. A call on each case's input would double their cost exactly
#: where they are slowest (cvxpy at d = 1000, cuda-imminent on the adversarial family).
WARM_ONCE_BACKENDS = frozenset({"cvxpy", "cuda-imminent"})
#: Limit (seconds) of the untimed phases: worker start and warm-up, input generation, checks.
PHASE_TIMEOUT = 600.0
#: Relative tolerance of the optimality certificate.
CERTIFICATE_RTOL = 1e-9
#: The fallback reference (float64).
FALLBACK_REFERENCE = "numba"


@dataclass(frozen=True)
class Runner:
    """Something that ``wsprox compare`` times.

    Attributes
    ----------
    name : str
        Registered backend name, external baseline name, or ``"sort-<device>"`` for a floor.
    label : str
        How tables and plots call it.
    kind : {"backend", "external", "floor"}
        A wsprox backend, an external baseline, or the sort of the device.
    device : {"cpu", "cuda"}
        Where it computes (and so which sort is its floor).
    max_d : int or None
        Largest size it is run on.
    warm_each_case : bool
        Call it once, untimed, on each case's input before the timed calls (for solvers
        that compile or calibrate something per size); else only the worker's first
        warm-up on a tiny input is made.
    """

    name: str
    label: str
    kind: str
    device: str
    max_d: int | None = None
    warm_each_case: bool = True


@dataclass
class Settings:
    """What one ``wsprox compare`` run does (the parsed options)."""

    sizes: list[int]
    families: list[str]
    runners: list[Runner]
    dtype: str = "float64"
    lam: float = 0.1
    repeat: int = 5
    timeout: float = 30.0
    imports: list[str] = field(default_factory=list)
    seed: int = 0
    warmup_allowance: float = WARMUP_ALLOWANCE


class Interrupted(KeyboardInterrupt):
    """Raised by :func:`run` on Ctrl-C (SIGINT), after killing the workers.

    Attributes
    ----------
    results : list of Result
        The results of the cases finished before the interruption.
    """

    def __init__(self, results):
        super().__init__("interrupted")
        self.results = results


@dataclass
class Result:
    """The outcome of one runner on one case.

    ``status`` is ``"ok"``, ``"timeout"`` (a call took longer than the timeout; ``limit_s``
    is the limit it passed: ``timeout`` for a timed call, ``timeout + warmup_allowance``
    for the untimed warm-up call), ``"error"`` or ``"skipped"`` (not run: the runner timed
    out on a smaller size of the family, ``note`` says which).
    """

    runner: Runner
    family: str
    d: int
    dtype: str
    seed: int | None = None
    status: str = "ok"
    times: list[float] = field(default_factory=list)
    warmup_s: float | None = None
    limit_s: float | None = None
    certificate: str | None = None
    violation: float | None = None
    clusters: int | None = None
    reference: str | None = None
    reference_clusters: int | None = None
    max_abs_diff: float | None = None
    floor_s: float | None = None
    error: str | None = None
    note: str = ""
    details: dict = field(default_factory=dict)  # see _solver_details
    x: np.ndarray | None = field(default=None, repr=False)  # the result, until compared with the reference

    @property
    def median(self) -> float | None:
        """Median of the timed calls (None unless ``status == "ok"``)."""
        return statistics.median(self.times) if self.status == "ok" and self.times else None

    @property
    def ratio(self) -> float | None:
        """``median / floor_s``: the time in units of the sort of the same array on the same device."""
        if self.median is None or not self.floor_s:
            return None
        return self.median / self.floor_s

    @property
    def failed(self) -> bool:
        """An error or a failed certificate."""
        return self.status == "error" or self.certificate == "FAIL"

    def as_dict(self) -> dict:
        """The JSON record of this result."""
        return {
            "backend": self.runner.name,
            "label": self.runner.label,
            "kind": self.runner.kind,
            "device": self.runner.device,
            "family": self.family,
            "d": self.d,
            "dtype": self.dtype,
            "seed": self.seed,
            "status": self.status,
            "runs": len(self.times),
            "times_s": list(self.times),
            "warmup_s": self.warmup_s,
            "limit_s": self.limit_s,
            "median_s": self.median,
            "floor_s": self.floor_s,
            "ratio_to_sort": self.ratio,
            "max_abs_diff": self.max_abs_diff,
            "reference": self.reference,
            "certificate": self.certificate,
            "certificate_violation": self.violation,
            "clusters": self.clusters,
            "reference_clusters": self.reference_clusters,
            "error": self.error,
            "note": self.note or None,
            "details": dict(self.details),
        }


# ----------------------------------------------------------------------------- runners


def _floor(device: str) -> Runner:
    if device == "cpu":  # np.argsort compiles nothing
        return Runner("sort-cpu", "np.argsort (floor)", "floor", "cpu", warm_each_case=False)
    return Runner(f"sort-{device}", f"{device} sort (floor)", "floor", device)


def select_runners(names: list[str] | None) -> tuple[list[Runner], dict[str, str]]:
    """The runners of a comparison and the reasons why the others do not run.

    Parameters
    ----------
    names : list of str or None
        Registered backends and external baselines to run. None: every available
        registered backend (cvxpy only up to :data:`CVXPY_QUICK_MAX_D`) and every
        installed external baseline.

    Returns
    -------
    runners : list of Runner
        The floors of the devices used first, then the solvers in the order asked.
    unavailable : dict of str to str
        ``{name: reason}`` of the registered backends and baselines left out because
        they cannot run here (only those not asked for explicitly, which raise instead),
        and of the baselines hidden by a registered backend of the same name (a name
        means the registered backend, which comes first).

    Raises
    ------
    ValueError
        A name that is neither registered nor an external baseline, or one that cannot run here.
    """
    infos = wsprox.backends()
    explicit = names is not None
    if names is None:
        names = [n for n, i in infos.items() if i.available] + [n for n, b in BASELINES.items() if b.availability()[0]]
    unavailable: dict[str, str] = {}
    if not explicit:
        unavailable.update({n: str(i.reason) for n, i in infos.items() if not i.available})
        for n, b in BASELINES.items():
            ok, reason = b.availability()
            if not ok:
                unavailable[f"{n} (external)"] = str(reason)
    for n in BASELINES:
        if n in infos:
            unavailable[f"{n} (external)"] = f"hidden by the registered backend {n!r} of the same name"
    runners: list[Runner] = []
    for name in dict.fromkeys(names):
        if name in infos:
            info = infos[name]
            if not info.available:
                raise ValueError(f"backend {name!r} is not available here: {info.reason}")
            device = "cuda" if "cuda" in info.array_kinds else "cpu"
            max_d = info.max_size
            if name == "cvxpy" and not explicit:
                max_d = min(max_d or CVXPY_QUICK_MAX_D, CVXPY_QUICK_MAX_D)
            runners.append(Runner(name, name, "backend", device, max_d, name not in WARM_ONCE_BACKENDS))
        elif name in BASELINES:
            ok, reason = BASELINES[name].availability()
            if not ok:
                raise ValueError(f"external baseline {name!r} is not available here: {reason}")
            # scipy, scikit-learn and torch (CPU) run precompiled code: nothing to warm per size
            runners.append(Runner(name, BASELINES[name].label, "external", "cpu", warm_each_case=False))
        else:
            known = ", ".join([*infos, *BASELINES])
            raise ValueError(f"unknown backend {name!r}; known: {known}")
    floors = [_floor(device) for device in dict.fromkeys(r.device for r in runners)]
    return floors + runners, unavailable


# ----------------------------------------------------------------------------- worker process


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _to_host(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # cupy
        return a.get()
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    if hasattr(a, "copy_to_host"):  # numba.cuda
        return a.copy_to_host()
    return np.asarray(a)


def _device_tools(device: str):
    """``(to_device, synchronize, device_sort)`` for ``device``; ``device_sort`` may be None."""
    if device == "cpu":
        return (lambda w: w), (lambda: None), np.argsort
    try:
        import cupy

        return cupy.asarray, (lambda: cupy.cuda.get_current_stream().synchronize()), cupy.argsort
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return (lambda w: torch.as_tensor(w, device="cuda")), torch.cuda.synchronize, torch.sort
    except ImportError:
        pass
    from numba import cuda

    return cuda.to_device, cuda.synchronize, None


def _make_solve(runner: Runner, lam: float):
    """``(solve, to_device, synchronize)`` of a runner, in the worker process."""
    to_device, synchronize, device_sort = _device_tools(runner.device)
    if runner.kind == "floor":
        if device_sort is None:
            raise RuntimeError(f"no sort on {runner.device}: install cupy or torch")
        return device_sort, to_device, synchronize
    if runner.kind == "external":
        solve_one = BASELINES[runner.name].make()
        return (lambda w: solve_one(w, lam)), to_device, synchronize
    name = runner.name
    return (lambda w: wsprox.prox(w, lam, backend=name)), to_device, synchronize


def _solver_details(runner: Runner, d: int) -> dict:
    """What a solver chose for a case that its result does not show (in the worker, after the runs).

    The ``numba`` backend: the sort engine it calibrated for rows of length ``d`` on this
    machine (``{"sort_engine": "radix"}`` or ``"numpy"``). Empty for the other runners.
    """
    if runner.kind == "backend" and runner.name == "numba":
        from .solvers._sort_engine import sort_engine

        return {"sort_engine": sort_engine(d)}
    return {}


def _check(w: np.ndarray, x: np.ndarray, lam: float) -> dict:
    """Certificate and cluster count of a result ``x`` of ``w``."""
    out: dict = {"x": x}
    if x.shape != w.shape:
        out.update(x=None, certificate="FAIL", error=f"the result has shape {x.shape}, the input {w.shape}")
        return out
    try:
        cert = wsprox.certify(w, x, lam, rtol=CERTIFICATE_RTOL)
        out["certificate"] = "ok" if cert.ok else "FAIL"
        out["violation"] = float(cert.max_violation)
    except Exception as exc:
        out["certificate"] = "FAIL"
        out["error"] = f"certify raised {_describe(exc)}"
    xs = np.sort(np.asarray(x, dtype=np.float64).ravel())
    out["clusters"] = int(1 + np.count_nonzero(xs[1:] != xs[:-1])) if xs.size else 0
    return out


def _worker_main(conn, runner: Runner, lam: float, dtype: str, cast: str | None, imports: list[str]) -> None:
    """Body of a worker process: warm up, then serve cases until told to stop (``None``)."""
    try:
        # Ctrl-C is the parent's business (it kills the workers); the parent starts the
        # worker with SIGINT ignored already, this covers a start from another thread.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass
    try:
        for module in imports:
            importlib.import_module(module)
        solve, to_device, synchronize = _make_solve(runner, lam)
        w = make_input("gauss", WARMUP_SIZE, lam, dtype, seed=12345)
        if cast:
            w = w.astype(cast)
        _to_host(solve(to_device(w)))
        synchronize()
    except BaseException as exc:
        conn.send(("error", f"warm-up failed: {_describe(exc)}"))
        return
    conn.send(("ready", None))
    while True:
        case = conn.recv()
        if case is None:
            return
        family, d, seed, repeat, warm = case
        try:
            w = make_input(family, d, lam, dtype, seed)
            if cast:
                w = w.astype(cast)
            wd = to_device(w)
            synchronize()
            conn.send(("start", None))
            times: list[float] = []
            x = None
            with warnings.catch_warnings(record=True) as caught:  # reported in the note, not on the terminal
                warnings.simplefilter("always")
                if warm:  # untimed: compilation and calibration for this size happen here
                    start = time.perf_counter()
                    solve(wd)
                    synchronize()
                    conn.send(("warm", time.perf_counter() - start))
                while len(times) < repeat and sum(times) < TIME_BUDGET:
                    start = time.perf_counter()
                    x = solve(wd)
                    synchronize()
                    times.append(time.perf_counter() - start)
                    conn.send(("time", times[-1]))
            conn.send(("end", None))
            info = {} if runner.kind == "floor" else _check(w, _to_host(x), lam)
            info["details"] = _solver_details(runner, d)
            messages = dict.fromkeys(f"{item.category.__name__}: {item.message}" for item in caught)
            if messages:
                info["note"] = "; ".join(messages)
            conn.send(("done", info))
        except Exception as exc:
            conn.send(("error", _describe(exc)))


#: The longest single wait on a worker's pipe, in seconds (a longer ``--timeout`` waits in slices).
_LONGEST_POLL = 86400.0


class _Worker:
    """The parent's handle on the worker process of one runner (started lazily, restarted after a kill)."""

    def __init__(self, runner: Runner, lam: float, dtype: str, imports: list[str], cast: str | None = None):
        self.runner, self.lam, self.dtype, self.imports, self.cast = runner, lam, dtype, imports, cast
        self.process = None
        self.conn = None
        self.broken: str | None = None  # warm-up error: do not try again

    def _receive(self, timeout: float):
        """The next message, ``("timeout", None)`` or ``("died", text)``."""
        deadline = time.monotonic() + timeout
        try:
            # in slices of at most a day: poll() takes no more than about 2**31 ms at once
            while not self.conn.poll(max(0.0, min(deadline - time.monotonic(), _LONGEST_POLL))):
                if time.monotonic() >= deadline:
                    return "timeout", None
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(1.0)
            return "died", f"worker process died (exit code {self.process.exitcode})"

    def _start(self) -> str | None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main,
            args=(child, self.runner, self.lam, self.dtype, self.cast, self.imports),
            name=f"wsprox-compare-{self.runner.name}",
            daemon=True,
        )
        # The worker inherits an ignored SIGINT (a fresh interpreter keeps it ignored), so a
        # Ctrl-C on the terminal, sent to the whole process group, stops only the parent.
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: the worker ignores SIGINT itself
            previous = None
        try:
            self.process.start()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        child.close()
        kind, payload = self._receive(PHASE_TIMEOUT)
        if kind == "ready":
            return None
        self.kill()
        if kind == "timeout":
            return f"warm-up took more than {PHASE_TIMEOUT:g} s"
        return payload

    def kill(self) -> None:
        """End the worker process now (it may be inside uninterruptible compiled code)."""
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5.0)
            self.conn.close()
        self.process = self.conn = None

    def close(self) -> None:
        """Ask the worker to stop, killing it if it does not."""
        if self.process is not None and self.process.is_alive():
            try:
                self.conn.send(None)
                self.process.join(5.0)
            except (OSError, EOFError, BrokenPipeError):
                pass
        self.kill()

    def run(self, family: str, d: int, seed: int, repeat: int, timeout: float, warmup_allowance: float = 0.0) -> dict:
        """Run one case: ``{"status", "times", "error", "warmup_s", "note", ...check results}``.

        With ``runner.warm_each_case`` the untimed call on the case's input may take
        ``timeout + warmup_allowance`` seconds.
        """
        if self.broken:
            return {"status": "error", "times": [], "error": self.broken}
        if self.process is None:
            error = self._start()
            if error:
                self.broken = error
                return {"status": "error", "times": [], "error": error}
        warm = self.runner.warm_each_case
        self.conn.send((family, d, seed, repeat, warm))
        kind, payload = self._receive(PHASE_TIMEOUT)
        if kind != "start":
            return self._failed(kind, payload, "generating the input")
        warmup_s = None
        if warm:
            limit = timeout + warmup_allowance
            kind, payload = self._receive(limit)
            if kind == "timeout":
                self.kill()
                note = f"the untimed warm-up call on this input took more than {limit:g} s"
                return {"status": "timeout", "times": [], "error": None, "note": note, "limit_s": limit}
            if kind != "warm":
                return self._failed(kind, payload, "the untimed warm-up call on this input")
            warmup_s = payload
        times: list[float] = []
        while True:
            kind, payload = self._receive(timeout)
            if kind == "time" and payload <= timeout:
                times.append(payload)
                continue
            if kind == "end":
                break
            if kind in ("timeout", "time"):
                self.kill()
                return {"status": "timeout", "times": times, "error": None, "warmup_s": warmup_s, "limit_s": timeout}
            return self._failed(kind, payload, "a timed call")
        kind, payload = self._receive(PHASE_TIMEOUT)
        if kind != "done":
            return self._failed(kind, payload, "checking the result")
        return {"status": "ok", "times": times, "warmup_s": warmup_s, **payload}

    def _failed(self, kind: str, payload, phase: str) -> dict:
        if kind == "timeout":
            self.kill()
            payload = f"{phase} took more than {PHASE_TIMEOUT:g} s"
        elif kind == "died":
            self.kill()
        return {"status": "error", "times": [], "error": str(payload)}


# ----------------------------------------------------------------------------- the comparison


def _reference_candidates(d: int) -> list[str]:
    infos = wsprox.backends()
    names = []
    if "cvxpy" in infos and infos["cvxpy"].available and d <= CVXPY_QUICK_MAX_D:
        names.append("cvxpy")
    if FALLBACK_REFERENCE in infos and infos[FALLBACK_REFERENCE].available:
        names.append(FALLBACK_REFERENCE)
    return names


def run(settings: Settings, progress=None) -> list[Result]:
    """Run every runner on every case of ``settings``.

    Parameters
    ----------
    settings : Settings
        The runners, sizes, families and options.
    progress : callable, optional
        ``progress(text)`` is called before each case and once with None at the end
        (``wsprox compare`` drives a tqdm bar with it).

    Returns
    -------
    list of Result
        One per runner and case, in the order size, family, runner; cases above a
        runner's ``max_d`` are left out.

    Raises
    ------
    Interrupted
        On Ctrl-C (KeyboardInterrupt), once the workers are killed; its ``results`` are
        those of the cases finished before.
    """
    sizes = sorted(dict.fromkeys(settings.sizes))
    workers = {r.name: _Worker(r, settings.lam, settings.dtype, settings.imports) for r in settings.runners}
    ref_workers: dict[str, _Worker] = {}
    timed_out: dict[tuple[str, str], int] = {}
    results: list[Result] = []
    interrupted = False
    try:
        for d in sizes:
            for worker in workers.values():  # free what is no longer needed
                if worker.runner.max_d is not None and d > worker.runner.max_d:
                    worker.close()
            for family in settings.families:
                seed = family_seed(family, settings.seed)
                case: list[Result] = []
                for runner in settings.runners:
                    if runner.max_d is not None and d > runner.max_d:
                        continue
                    if progress is not None:
                        progress(f"{runner.label} {family} d={d}")
                    result = Result(runner, family, d, settings.dtype, seed)
                    if (runner.name, family) in timed_out:
                        result.status = "skipped"
                        result.note = f"not run: timed out at d={timed_out[runner.name, family]}"
                    else:
                        outcome = workers[runner.name].run(
                            family, d, seed, settings.repeat, settings.timeout, settings.warmup_allowance
                        )
                        result.status = outcome["status"]
                        result.times = outcome["times"]
                        result.warmup_s = outcome.get("warmup_s")
                        result.limit_s = outcome.get("limit_s")
                        result.error = outcome.get("error")
                        result.note = outcome.get("note") or ""
                        result.details = outcome.get("details") or {}
                        result.certificate = outcome.get("certificate")
                        result.violation = outcome.get("violation")
                        result.clusters = outcome.get("clusters")
                        result.x = outcome.get("x")
                        if result.status == "timeout":
                            timed_out[runner.name, family] = d
                    case.append(result)
                _finish_case(case, settings, family, d, seed, ref_workers)
                results.extend(case)  # only finished cases: an interruption drops the one in progress
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for worker in [*workers.values(), *ref_workers.values()]:
            if interrupted:
                worker.kill()  # it may be inside a long call: do not wait for it
            else:
                worker.close()
        if progress is not None:
            progress(None)
    if interrupted:
        raise Interrupted(results)
    return results


def _finish_case(case: list[Result], settings: Settings, family: str, d: int, seed: int, ref_workers) -> None:
    """Fill in floors, ratios, the reference and the differences to it; drop the result arrays."""
    floors = {r.runner.device: r.median for r in case if r.runner.kind == "floor"}
    for r in case:
        r.floor_s = floors.get(r.runner.device)
    if any(r.x is not None for r in case):
        ref_name, ref = _reference(case, settings, family, d, seed, ref_workers)
        for r in case:
            x = r.x
            if x is None or ref is None:
                continue
            r.reference = ref_name
            r.reference_clusters = int(1 + np.count_nonzero(np.diff(np.sort(ref))))
            r.max_abs_diff = float(np.max(np.abs(np.asarray(x, dtype=np.float64) - ref)))
    for r in case:
        r.x = None


def _reference(case, settings, family, d, seed, ref_workers) -> tuple[str | None, np.ndarray | None]:
    """The first candidate whose float64 result passes the certificate; else the first result at all."""
    uncertified = None
    for name in _reference_candidates(d):
        found = None
        if settings.dtype == "float64":
            for r in case:
                if r.runner.name == name and r.runner.kind == "backend" and r.x is not None:
                    found = r.certificate, r.x
                    break
        if found is None:
            if name not in ref_workers:
                runner = Runner(name, name, "backend", "cpu", warm_each_case=False)  # untimed anyway
                ref_workers[name] = _Worker(runner, settings.lam, settings.dtype, settings.imports, cast="float64")
            outcome = ref_workers[name].run(family, d, seed, 1, PHASE_TIMEOUT)
            if outcome["status"] == "ok" and outcome.get("x") is not None:
                found = outcome.get("certificate"), outcome["x"]
        if found is None:
            continue
        if found[0] == "ok":
            return name, np.asarray(found[1], dtype=np.float64)
        if uncertified is None:
            uncertified = name, np.asarray(found[1], dtype=np.float64)
    return uncertified if uncertified is not None else (None, None)


# ----------------------------------------------------------------------------- reporting


def format_time(seconds: float | None) -> str:
    """``1.23 ms`` style; ``-`` for None."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


TABLE_HEADER = ("backend", "family", "d", "runs", "median", "x sort", "max |x - ref|", "ref", "clusters", "certificate")


def table_cells(r: Result, timeout: float) -> tuple[str, ...]:
    """The table row of a result (see :data:`TABLE_HEADER`)."""
    if r.status == "timeout":
        median = f"> {format_time(timeout if r.limit_s is None else r.limit_s)}"
    elif r.status in ("error", "skipped"):
        median = "-"
    else:
        median = format_time(r.median)
    if r.max_abs_diff is None:
        diff = "-"
    elif r.runner.name == r.reference and r.runner.kind == "backend" and r.dtype == "float64":
        diff = "(reference)"
    else:
        diff = f"{r.max_abs_diff:.1e}"
    status = {"timeout": "timeout", "error": "ERROR", "skipped": "not run"}.get(r.status) or r.certificate or "-"
    if r.status == "skipped" and r.note.startswith("not run: "):
        status = f"not run ({r.note[len('not run: ') :]})"
    return (
        r.runner.label,
        r.family,
        str(r.d),
        str(len(r.times)),
        median,
        "-" if r.ratio is None else f"{r.ratio:.2f}",
        diff,
        r.reference or "-",
        "-" if r.clusters is None else str(r.clusters),
        status,
    )


def format_table(results: list[Result], timeout: float) -> str:
    """The results as a plain-text table (columns of :data:`TABLE_HEADER`), grouped by family and size."""
    order = {}
    for r in results:
        order.setdefault(r.family, len(order))
    rows = [table_cells(r, timeout) for r in sorted(results, key=lambda r: (order[r.family], r.d))]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(TABLE_HEADER)]
    right = {2, 3, 4, 5, 6, 8}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(TABLE_HEADER).rstrip(), "  ".join("-" * w for w in widths)]
    for k, row in enumerate(rows):
        if k and row[1] != rows[k - 1][1]:
            out.append("")  # a blank line between families
        out.append(line(row).rstrip())
    return "\n".join(out)


#: Formats that ``--plot`` writes, by file extension (all written by matplotlib's Agg canvas).
PLOT_FORMATS = ("png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def plot_format(path: str) -> str:
    """The format of ``--plot PATH``: its extension, lower case.

    Raises
    ------
    ValueError
        If the extension is missing or not one of :data:`PLOT_FORMATS`.
    """
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        found = f"extension .{ext}" if ext else "no extension"
        raise ValueError(f"{path!r} has {found}; the format is chosen by it: .{', .'.join(PLOT_FORMATS)}")
    return ext


def plot(results: list[Result], path: str, title: str, timeout: float) -> None:
    """Time against d (log-log), one panel per family, one line per runner; timeouts as triangles at their limit.

    The format is chosen by the extension of ``path`` (see :func:`plot_format`). Every
    runner has a legend entry (also one that only timed out); the triangles of different
    runners at one size are shifted apart along d (by 4 % per runner) so that none hides
    another.
    """
    plot_format(path)  # a bad extension fails before any drawing
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    families = list(dict.fromkeys(r.family for r in results))
    runners = list(dict.fromkeys(r.runner for r in results))
    ncols = min(4, max(1, len(families)))
    nrows = -(-len(families) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = {}
    for k, runner in enumerate(runners):
        colors[runner] = "0.4" if runner.kind == "floor" else f"C{k % 10}"
    for ax, family in zip(axes.flat, families):
        for runner in runners:
            mine = sorted((r for r in results if r.family == family and r.runner == runner), key=lambda r: r.d)
            ok = [(r.d, r.median) for r in mine if r.median is not None]
            style = "--" if runner.kind == "floor" else "-"
            if ok:
                ax.plot(*zip(*ok), style, marker="o", ms=3, color=colors[runner])
            shift = 1.04 ** runners.index(runner)
            slow = [(r.d * shift, timeout if r.limit_s is None else r.limit_s) for r in mine if r.status == "timeout"]
            if slow:
                ax.plot(*zip(*slow), "^", color=colors[runner])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(family)
        ax.set_xlabel("d")
        ax.set_ylabel("median time (s)")
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(families) :]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], linestyle="--" if runner.kind == "floor" else "-", marker="o", ms=3, color=colors[runner])
        for runner in runners
    ]
    labels = [runner.label for runner in runners]
    if any(r.status == "timeout" for r in results):
        handles.append(Line2D([], [], linestyle="", marker="^", color="0.3"))
        labels.append("timed out (drawn at the limit)")
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels) or 1), fontsize="small")
    fig.suptitle(title, fontsize="medium")
    save_figure_atomically(fig, path, dpi=110)
