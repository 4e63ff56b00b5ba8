"""The ``wsprox`` command line (also ``python -m wsprox``).

Subcommands:

``wsprox compare``
    Time every available backend and external baseline on built-in input families and
    sizes, each in its own worker process (:mod:`wsprox._compare`), and check every result
    against a reference and with the optimality certificate.
``wsprox backends``
    List the registered backends and whether they run here.

Each subcommand is a ``_cmd_*`` function registered in :func:`build_parser`; new options
and subcommands are added there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import textwrap
import time

import wsprox

from . import _compare
from ._families import DEFAULT_FAMILIES, FAMILIES

__all__ = ["main", "build_parser", "DEFAULT_SIZES"]

#: Problem sizes of the default ``compare`` run (cvxpy runs only at the smallest, see ``CVXPY_QUICK_MAX_D``).
DEFAULT_SIZES = (100, 1_000, 100_000, 1_000_000)
#: Strength of the default ``compare`` run.
DEFAULT_LAM = 0.1
#: Timed runs per backend and case (after one untimed warm-up call per worker).
DEFAULT_REPEAT = 5
#: Default limit of one timed call (seconds).
DEFAULT_TIMEOUT = 30.0


# ----------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
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


def _sizes(text: str) -> list[int]:
    """A comma-separated list of sizes, e.g. ``1e3,1e5,1e7``."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"no size in {text!r}")
    return [_size(p.strip()) for p in parts]


def _families(text: str) -> list[str]:
    """A comma-separated list of family names, or ``all``."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown family {', '.join(unknown) or text!r}; known: {', '.join(FAMILIES)}")
    return names


def _names(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no name in {text!r}")
    return names


def _flatten(lists):
    return None if lists is None else list(dict.fromkeys(item for group in lists for item in group))


def _show_size(d: int) -> str:
    """``1e6`` for powers of ten from 1e4 on, else the integer."""
    k = round(math.log10(d))
    return f"1e{k}" if k >= 4 and 10**k == d else str(d)


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(textwrap.fill(" ".join(t.split()), width=100) for t in texts)


_COMPARE_DESCRIPTION = (
    _paragraphs(
        "Time and check every solver on built-in input families and sizes.",
        f"""Solvers: every available registered backend (cvxpy only up to d = {_compare.CVXPY_QUICK_MAX_D} unless
    named in --backends, where it runs up to its max_size) and every installed external baseline, labelled
    "(external)": scipy (sort + scipy.optimize.isotonic_regression + unsort), sklearn (the same with
    sklearn.isotonic.isotonic_regression, in float64) and torchsort (the soft-rank identity; its rank
    convention is checked against the numba backend first).""",
        f"""Each solver runs in its own worker process. The worker first calls it once, untimed and without the
    --timeout limit, on a tiny input of the run's dtype (so numba compilation and first imports are
    excluded), then times up to --repeat calls per case (fewer once they take {_compare.TIME_BUDGET:g} s). A
    call that takes longer than --timeout is killed with its worker and reported as "> TIMEOUT"; larger
    sizes of that family are then not tried on that solver. Timeouts are reported, not failures.""",
        f"""Columns: median time; "x sort", the median time divided by that of the sort of the same array on the
    same device (np.argsort on the CPU; a torch or cupy sort on a GPU, synchronized), the floor; the largest
    difference to the reference (cvxpy where installed and d <= {_compare.CVXPY_QUICK_MAX_D}, else the float64
    numba result of the same input) and the reference's name; the number of distinct values (clusters) of
    the result; the optimality certificate (wsprox.certify, rtol {_compare.CERTIFICATE_RTOL:g}).""",
        """Exit status: 0 if every registered backend ran and passed the certificate; 1 if a backend raised or
    failed the certificate (external baselines are reported but do not change the status, and timeouts are
    reported, not failures); 2 for bad arguments.""",
    )
    + "\n\nfamilies:\n"
    + "\n".join(f"  {f.name:<12} {f.description}" for f in FAMILIES.values())
)


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
        help="time every available solver and check its results",
        description=_COMPARE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--sizes",
        nargs="+",
        type=_sizes,
        metavar="D[,D...]",
        help=f"problem sizes, comma- or space-separated, e.g. 1e3,1e5,1e7 (default: "
        f"{','.join(map(_show_size, DEFAULT_SIZES))})",
    )
    compare.add_argument(
        "--families",
        nargs="+",
        type=_families,
        metavar="NAME[,NAME...]",
        help=f"input families or 'all' (default: {','.join(DEFAULT_FAMILIES)}; all: {','.join(FAMILIES)})",
    )
    compare.add_argument(
        "--backends",
        nargs="+",
        type=_names,
        metavar="NAME[,NAME...]",
        help="registered backends and external baselines (scipy, sklearn, torchsort) to run "
        "(default: every available one)",
    )
    compare.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64", help="dtype of the inputs (default: float64)"
    )
    compare.add_argument(
        "--lam", type=_positive_float, default=DEFAULT_LAM, metavar="LAM", help=f"strength (default: {DEFAULT_LAM:g})"
    )
    compare.add_argument(
        "--repeat",
        type=_positive_int,
        default=DEFAULT_REPEAT,
        metavar="N",
        help=f"timed calls per solver and case, fewer once they take {_compare.TIME_BUDGET:g} s "
        f"(default: {DEFAULT_REPEAT})",
    )
    compare.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"limit of one timed call; slower ones are killed and reported as '> SECONDS', not as failures "
        f"(default: {DEFAULT_TIMEOUT:g})",
    )
    compare.add_argument("--json", metavar="PATH", help="also write the results and machine info as JSON to PATH")
    compare.add_argument("--plot", metavar="PATH", help="also plot time against d (log-log) as a PNG to PATH")
    compare.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, here and in every worker process (repeatable): a module that calls "
        "wsprox.register_backend makes its backend comparable",
    )
    compare.add_argument("--seed", type=int, default=0, help="seed of the random families (default: 0)")
    compare.set_defaults(func=_cmd_compare, parser=compare)

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


class _Progress:
    """A tqdm bar on stderr (shown on terminals only; nothing without tqdm), fed by ``_compare.run``."""

    def __init__(self, total: int):
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, file=sys.stderr, disable=None, leave=False, unit="case", dynamic_ncols=True)
        self.started = False

    def __call__(self, text: str | None) -> None:
        if self.bar is None:
            return
        if self.started:
            self.bar.update(1)
        if text is None:
            self.bar.close()
        else:
            self.started = True
            self.bar.set_description_str(text[:60])


def _cmd_compare(args: argparse.Namespace) -> int:
    parser = args.parser
    for module in args.imports:
        try:
            importlib.import_module(module)
        except Exception as exc:
            parser.error(f"--import {module}: {type(exc).__name__}: {exc}")
    try:
        runners, unavailable = _compare.select_runners(_flatten(args.backends))
    except ValueError as exc:
        parser.error(str(exc))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib")
    settings = _compare.Settings(
        sizes=sorted(_flatten(args.sizes) or DEFAULT_SIZES),
        families=_flatten(args.families) or list(DEFAULT_FAMILIES),
        runners=runners,
        dtype=args.dtype,
        lam=args.lam,
        repeat=args.repeat,
        timeout=args.timeout,
        imports=list(args.imports),
        seed=args.seed,
    )
    print(
        f"wsprox {wsprox.__version__} compare: {settings.dtype}, lam={settings.lam:g}, "
        f"sizes {', '.join(map(str, settings.sizes))}; median of up to {settings.repeat} timed calls "
        f"(fewer once they take {_compare.TIME_BUDGET:g} s), each limited to {settings.timeout:g} s, after an "
        "untimed warm-up call per worker process (numba compile time is excluded).",
        flush=True,
    )
    total = sum(
        len(settings.families) for d in settings.sizes for r in settings.runners if r.max_d is None or d <= r.max_d
    )
    start = time.perf_counter()
    results = _compare.run(settings, progress=_Progress(total))
    wall = time.perf_counter() - start
    print(_compare.format_table(results, settings.timeout))

    skipped = [
        f"{r.label} (d > {r.max_d})" for r in settings.runners if r.max_d is not None and max(settings.sizes) > r.max_d
    ]
    if skipped:
        print("not run above its size limit: " + ", ".join(skipped))
    for name, reason in unavailable.items():
        print(f"not available: {name} ({reason})")
    timeouts = [r for r in results if r.status == "timeout"]
    if timeouts:
        print(
            f"timeouts (> {settings.timeout:g} s, not failures): "
            + ", ".join(f"{r.runner.label} {r.family} d={r.d}" for r in timeouts)
        )
    failed = [r for r in results if r.failed]
    for r in failed:
        what = f"{r.runner.label} on {r.family} d={r.d}"
        if r.status == "error":
            print(f"ERROR: {what}: {r.error}")
        else:
            extra = f" ({r.error})" if r.error else ""
            print(f"FAIL: {what}: optimality certificate violated ({r.violation or 0:.3g} x tolerance){extra}")
    status = 1 if any(r.runner.kind == "backend" for r in failed) else 0
    checked = [r for r in results if r.certificate is not None]
    if status:
        print(f"FAILED: {sum(r.runner.kind == 'backend' for r in failed)} backend runs failed")
    else:
        print(
            f"{sum(r.certificate == 'ok' for r in checked)} of {len(checked)} results passed the optimality "
            f"certificate; every backend passed ({wall:.1f} s)"
        )
    machine = _compare.machine_info()
    if args.json:
        record = {
            "schema": "wsprox-compare/1",
            "wsprox_version": wsprox.__version__,
            "settings": {
                "sizes": settings.sizes,
                "families": settings.families,
                "backends": [r.name for r in settings.runners if r.kind != "floor"],
                "dtype": settings.dtype,
                "lam": settings.lam,
                "repeat": settings.repeat,
                "timeout_s": settings.timeout,
                "time_budget_s": _compare.TIME_BUDGET,
                "seed": settings.seed,
                "certificate_rtol": _compare.CERTIFICATE_RTOL,
                "imports": settings.imports,
            },
            "runners": [
                {"name": r.name, "label": r.label, "kind": r.kind, "device": r.device, "max_d": r.max_d}
                for r in settings.runners
            ],
            "unavailable": unavailable,
            "machine": machine,
            "wall_s": wall,
            "exit_status": status,
            "results": [r.as_dict() for r in results],
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        gpu = f", {machine['gpu']}" if machine["gpu"] else ""
        title = (
            f"wsprox compare: {settings.dtype}, lam={settings.lam:g}; {machine['cpu']} ({machine['cores']} cores{gpu})"
        )
        _compare.plot(results, args.plot, title, settings.timeout)
        print(f"wrote {args.plot}")
    return status


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
