"""The ``wsprox`` command line (also ``python -m wsprox``).

Subcommands:

``wsprox compare``
    Run every available backend on a small built-in problem set, time it, and check
    each result against a reference and with the optimality certificate.
``wsprox backends``
    List the registered backends and whether they run here.

Each subcommand is a ``_cmd_*`` function registered in :func:`build_parser`; new options
and subcommands are added there.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

import wsprox

__all__ = ["main", "build_parser", "FAMILIES", "DEFAULT_SIZES"]

#: Problem sizes of the default ``compare`` run. The cvxpy reference costs about 4 s at d = 500 and
#: 25 s (2.5 GB) at d = 1000 on a 2-core machine, so the middle size is 500: the run takes about 20 s.
DEFAULT_SIZES = (100, 500, 100_000)
#: Strength of the default ``compare`` run.
DEFAULT_LAM = 0.1
#: Timed runs per backend and problem (after one warm-up call).
DEFAULT_REPEAT = 5
#: Stop repeating a backend on a problem once its timed runs have taken this long (seconds).
TIME_BUDGET = 1.0
#: Backend giving the reference result where it accepts the size, else :data:`FALLBACK_REFERENCE`.
REFERENCE = "cvxpy"
FALLBACK_REFERENCE = "numba"
#: Relative tolerance of the optimality certificate.
CERTIFICATE_RTOL = 1e-9


def _gaussian(d: int, lam: float, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(d)


def _ramp(d: int, lam: float, rng: np.random.Generator) -> np.ndarray:
    """d/2 zeros, then the ramp a*(1..d/2) with a = 2.25 lam / d (about d/2 collision rounds)."""
    half = d // 2
    a = 2.25 * lam / d
    return np.concatenate([np.zeros(d - half), a * np.arange(1, half + 1)])


#: Input families: name -> (description, generator(d, lam, rng) -> float64 vector).
FAMILIES = {
    "gaussian": ("i.i.d. standard normal", _gaussian),
    "ramp": ("adversarial: d/2 zeros then the ramp a*(1..d/2), a = 2.25*lam/d", _ramp),
}


@dataclass
class _Row:
    backend: str
    family: str
    d: int
    runs: int = 0
    median: float | None = None
    diff: float | None = None
    reference: str = ""
    certificate: str = ""
    detail: str = ""
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.certificate != "ok"


# ----------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _size(text: str) -> int:
    """A problem size: an int, also written like ``1e5``; at least 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if not value.is_integer() or value < 2:
        raise argparse.ArgumentTypeError(f"a size must be an integer >= 2, got {text!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``wsprox`` command (one subparser per subcommand)."""
    parser = argparse.ArgumentParser(
        prog="wsprox",
        description="Exact proximal mapping of the weight-sharing regularizer R(w) = 1/(d-1) sum_{i>j} |w_i - w_j|.",
    )
    parser.add_argument("--version", action="version", version=f"wsprox {wsprox.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    compare = sub.add_parser(
        "compare",
        help="time every available backend and check its results",
        description=(
            "Run every available backend on built-in problems (families: "
            + "; ".join(f"{name}: {desc}" for name, (desc, _) in FAMILIES.items())
            + "). Each backend is first called once, untimed, on a tiny problem, so numba compile time is "
            "excluded; then it is timed on each problem. The table gives the median time, the largest "
            f"difference to the reference ({REFERENCE} where it accepts the size, else the float64 "
            f"{FALLBACK_REFERENCE} result) and whether the optimality certificate (wsprox.certify) holds. "
            "Exit status 1 if a certificate fails or a backend raises."
        ),
    )
    compare.add_argument(
        "--sizes",
        nargs="+",
        type=_size,
        default=list(DEFAULT_SIZES),
        metavar="D",
        help=f"problem sizes (default: {' '.join(map(str, DEFAULT_SIZES))})",
    )
    compare.add_argument(
        "--repeat",
        type=_positive_int,
        default=DEFAULT_REPEAT,
        metavar="N",
        help=f"timed runs per backend and problem, fewer once they take over {TIME_BUDGET:g} s "
        f"(default: {DEFAULT_REPEAT})",
    )
    compare.set_defaults(func=_cmd_compare)

    backends = sub.add_parser(
        "backends",
        help="list the registered backends",
        description="List the registered backends as a markdown table (what wsprox.backends() returns).",
    )
    backends.set_defaults(func=_cmd_backends)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``wsprox`` command with arguments ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


# ----------------------------------------------------------------------------- compare


def _warm_up(names: list[str], lam: float) -> None:
    """Call each backend once on a tiny problem, untimed: absorbs numba compilation and first-import costs.

    The tiny problem has the argument types of the timed calls (a contiguous float64
    vector), so nothing is compiled later. Errors are left to the timed calls to report.
    """
    w = _gaussian(8, lam, np.random.default_rng(12345))
    for name in names:
        try:
            wsprox.prox(w, lam, backend=name)
        except Exception:  # reported by the timed calls
            pass


def _time_backend(name: str, w: np.ndarray, lam: float, repeat: int) -> tuple[np.ndarray, list[float]]:
    """Up to ``repeat`` timed calls, stopping early once they have taken :data:`TIME_BUDGET`; the last result."""
    times: list[float] = []
    while len(times) < repeat and sum(times) < TIME_BUDGET:
        start = time.perf_counter()
        x = wsprox.prox(w, lam, backend=name)
        times.append(time.perf_counter() - start)
    return x, times


def _cmd_compare(args: argparse.Namespace) -> int:
    lam = DEFAULT_LAM
    sizes = list(dict.fromkeys(args.sizes))
    infos = wsprox.backends()
    available = [name for name, info in infos.items() if info.available and "numpy" in info.array_kinds]
    unavailable = {name: info.reason for name, info in infos.items() if name not in available}

    print(
        f"wsprox {wsprox.__version__} compare: lam={lam:g}, float64 input. Time: median of up to {args.repeat} "
        f"runs (fewer once they take {TIME_BUDGET:g} s), after one untimed warm-up call per backend, "
        "so numba compile time is excluded.",
        flush=True,
    )
    _warm_up(available, lam)
    table = _Table(
        ("backend", "family", "d", "runs", "median time", "max |x - ref|", "ref", "certificate"),
        (
            max(7, *map(len, available)) if available else 7,
            max(map(len, FAMILIES)),
            max(len(str(d)) for d in sizes),
            4,
            11,
            13,
            max(5, *map(len, available)) if available else 5,
            11,
        ),
        right=(2, 3, 4, 5),
    )
    table.print_header()
    rows: list[_Row] = []
    skipped: list[str] = []
    for d in sizes:
        for seed, (family, (_, generate)) in enumerate(FAMILIES.items()):
            w = generate(d, lam, np.random.default_rng(seed))
            results: dict[str, np.ndarray] = {}
            problem_rows: list[_Row] = []
            for name in available:
                max_size = infos[name].max_size
                if max_size is not None and d > max_size:
                    skipped.append(f"{name} (d={d} > max_size {max_size})")
                    continue
                row = _Row(name, family, d)
                try:
                    x, times = _time_backend(name, w, lam, args.repeat)
                except Exception as exc:  # report it and go on with the other backends
                    row.error = f"{type(exc).__name__}: {exc}"
                else:
                    results[name] = x
                    row.runs = len(times)
                    row.median = statistics.median(times)
                    row.certificate, row.detail = _certificate(w, x, lam)
                problem_rows.append(row)
            ref_name = _reference_name(d, infos, available)
            ref = results.get(ref_name)
            if ref is None:
                ref_name, ref = _compute_reference(ref_name, w, lam, results)
            for row in problem_rows:
                row.reference = ref_name if ref is not None else "-"
                if row.backend in results and ref is not None:
                    row.diff = float(np.max(np.abs(results[row.backend] - ref)))
                table.print_row(
                    (
                        row.backend,
                        row.family,
                        str(row.d),
                        str(row.runs),
                        _format_time(row.median),
                        _format_diff(row),
                        row.reference,
                        "ERROR" if row.error else row.certificate,
                    )
                )
            rows.extend(problem_rows)

    if skipped:
        print("skipped: " + ", ".join(dict.fromkeys(skipped)))
    for name, reason in unavailable.items():
        print(f"not available: {name} ({reason})")
    failed = [row for row in rows if row.failed]
    for row in failed:
        if row.error:
            print(f"ERROR: {row.backend} on {row.family} d={row.d}: {row.error}")
        elif row.certificate != "ok":
            print(f"FAIL: {row.backend} on {row.family} d={row.d}: optimality certificate {row.detail}")
    if failed:
        print(f"FAILED: {len(failed)} of {len(rows)} runs")
        return 1
    print(f"all {len(rows)} runs passed the optimality certificate")
    return 0


def _reference_name(d: int, infos: dict, available: list[str]) -> str:
    info = infos.get(REFERENCE)
    if REFERENCE in available and (info.max_size is None or d <= info.max_size):
        return REFERENCE
    return FALLBACK_REFERENCE


def _compute_reference(name: str, w: np.ndarray, lam: float, results: dict) -> tuple[str, np.ndarray | None]:
    """The reference result when its backend was not among the timed ones (or failed there)."""
    for candidate in dict.fromkeys([name, FALLBACK_REFERENCE]):
        if candidate in results:
            return candidate, results[candidate]
        try:
            return candidate, wsprox.prox(w, lam, backend=candidate)
        except Exception:  # try the next candidate
            continue
    return "-", None


def _certificate(w: np.ndarray, x: np.ndarray, lam: float) -> tuple[str, str]:
    """``("ok" | "FAIL" | "error", details)`` from :func:`wsprox.certify`."""
    try:
        cert = wsprox.certify(w, x, lam, rtol=CERTIFICATE_RTOL)
    except Exception as exc:
        return "error", f"raised {type(exc).__name__}: {exc}"
    if cert.ok:
        return "ok", ""
    violation = getattr(cert, "max_violation", None)
    return "FAIL", "failed" if violation is None else f"failed: largest violation {violation:.3g} x tolerance"


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _format_diff(row: _Row) -> str:
    if row.diff is None:
        return "-"
    if row.backend == row.reference:
        return "(reference)"
    return f"{row.diff:.2e}"


class _Table:
    """A plain-text table printed row by row (so that long runs show progress), columns of fixed width."""

    def __init__(self, header: tuple[str, ...], widths: tuple[int, ...], right: tuple[int, ...] = ()):
        self.header = header
        self.widths = [max(len(h), w) for h, w in zip(header, widths)]
        self.right = right

    def _format(self, cells) -> str:
        return "  ".join(
            str(c).rjust(w) if i in self.right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, self.widths))
        ).rstrip()

    def print_header(self) -> None:
        print(self._format(self.header))
        print("  ".join("-" * w for w in self.widths), flush=True)

    def print_row(self, cells) -> None:
        print(self._format(cells), flush=True)


# ----------------------------------------------------------------------------- backends


def _cmd_backends(args: argparse.Namespace) -> int:
    header = ("name", "available", "arrays", "dtypes", "batched", "max size", "description")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for info in wsprox.backends().values():
        available = "yes" if info.available else f"no: {info.reason}"
        max_size = "-" if info.max_size is None else _format_size(info.max_size)
        cells = (
            f"`{info.name}`",
            available,
            ", ".join(info.array_kinds),
            ", ".join(info.dtypes),
            "yes" if info.batched else "no",
            max_size,
            info.description,
        )
        print("| " + " | ".join(cells) + " |")
    return 0


def _format_size(n: int) -> str:
    if n > 1 and (n + 1) & n == 0:  # 2**k - 1
        return f"2^{int(math.log2(n + 1))} - 1"
    return str(n)
