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
import io
import json
import math
import os
import sys
import textwrap
import time

import wsprox

from . import _compare
from ._families import DEFAULT_FAMILIES, FAMILIES, make_input
from ._files import check_writable, write_atomically

__all__ = ["main", "build_parser", "DEFAULT_SIZES"]

#: Problem sizes of the default ``compare`` run (cvxpy runs only at the smallest, see ``CVXPY_QUICK_MAX_D``).
DEFAULT_SIZES = (100, 1_000, 100_000, 1_000_000)
#: Strength of the default ``compare`` run.
DEFAULT_LAM = 0.1
#: Timed runs per backend and case (after the untimed warm-up calls).
DEFAULT_REPEAT = 5
#: Default limit of one timed call (seconds).
DEFAULT_TIMEOUT = 30.0
#: Exit status of an interrupted (Ctrl-C) run, as for a shell command killed by SIGINT.
EXIT_INTERRUPTED = 130


# ----------------------------------------------------------------------------- parser


def _int_at_least(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, ">= 1")


def _nonnegative_int(text: str) -> int:
    return _int_at_least(text, 0, "a non-negative integer")


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
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
    return "\n\n".join(textwrap.fill(" ".join(t.split()), width=100, break_on_hyphens=False) for t in texts)


_COMPARE_DESCRIPTION = (
    _paragraphs(
        "Time and check every solver on built-in input families and sizes.",
        f"""Solvers: every available registered backend (cvxpy only up to d = {_compare.CVXPY_QUICK_MAX_D} unless
    named in --backends, where it runs up to its max_size) and every installed external baseline, labelled
    "(external)": scipy (sort + scipy.optimize.isotonic_regression + unsort), sklearn (the same with
    sklearn.isotonic.isotonic_regression, in float64) and torchsort (the soft-rank identity; its rank
    convention is checked against the numba backend first).""",
        f"""Each solver runs in its own worker process. The worker first calls it once, untimed, on a tiny input
    of the run's dtype (first imports, compilation for the dtype). Solvers that compile or calibrate per size
    (numba: code for rows above 1024 elements, a sort calibration per row-length class; the cuda
    backend; GPU sorts; every backend of --import) are then called once more, untimed, on each case's
    own input before the timed calls, so compilation and calibration are never timed; that call may take
    --timeout + --warmup-allowance seconds (the allowance is {_compare.WARMUP_ALLOWANCE:g} s by default).
    cvxpy, cuda-imminent, the external baselines and np.argsort compile nothing that depends on the size
    and get only the first call. Then up to --repeat calls per case are timed (fewer once they take
    {_compare.TIME_BUDGET:g} s).""",
        """A call that takes longer than --timeout (or an untimed call on a case's input longer than
    --timeout + --warmup-allowance) is killed with its worker and reported as "> TIMEOUT"; larger sizes of
    that family are then not run on that solver and show as "not run (timed out at d=...)". Timeouts are
    reported, not failures. Sizes above the size limit of every selected solver are refused.""",
        f"""Columns: median time; "x sort", the median time divided by that of the sort of the same array on the
    same device (np.argsort on the CPU; a torch or cupy sort on a GPU, synchronized), the floor; the largest
    difference to the reference (cvxpy where installed and d <= {_compare.CVXPY_QUICK_MAX_D}, else the float64
    numba result of the same input) and the reference's name; the number of distinct values (clusters) of
    the result; the optimality certificate (wsprox.certify, rtol {_compare.CERTIFICATE_RTOL:g}).""",
        """Inputs: each family's input is seeded from --seed and the family's name, so it does not depend on
    the other families of the run; the JSON records each case's seed.""",
        """Ctrl-C stops the run: the workers are killed and the cases finished so far are printed (and written
    to --json and --plot), exit status 130.""",
        """Exit status: 0 if no registered backend raised or failed the certificate and at least one result was
    checked; 1 if a registered backend raised or failed the certificate, if a floor (sort) raised, if no
    result at all was checked (e.g. every call timed out), or if --json or --plot could not be written
    (external baselines are reported but do not change the status, and timeouts are reported, not
    failures); 2 for bad arguments; 130 if interrupted.""",
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
        "(default: every available one; a registered backend hides a baseline of the same name)",
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
    compare.add_argument(
        "--warmup-allowance",
        type=_nonnegative_float,
        default=_compare.WARMUP_ALLOWANCE,
        metavar="SECONDS",
        help="extra time, on top of --timeout, for the untimed call on each case's input in which "
        f"compilation and calibration happen (default: {_compare.WARMUP_ALLOWANCE:g})",
    )
    compare.add_argument(
        "--json", metavar="PATH", help="also write the results and machine info as JSON to PATH (checked first)"
    )
    compare.add_argument(
        "--plot",
        metavar="PATH",
        help="also plot time against d (log-log) to PATH, in the format of its extension: "
        f"{', '.join(_compare.PLOT_FORMATS)} (needs matplotlib)",
    )
    compare.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, here and in every worker process (repeatable): a module that calls "
        "wsprox.register_backend makes its backend comparable",
    )
    compare.add_argument(
        "--seed",
        type=_nonnegative_int,
        default=0,
        help="seed of the random families, a non-negative integer; each family's input is seeded from it "
        "and the family's name (default: 0)",
    )
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
    try:
        return args.func(args)
    except KeyboardInterrupt:  # outside the runs (compare handles its own): no traceback
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


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


def _check_output_path(parser: argparse.ArgumentParser, option: str, path: str) -> None:
    """A parser error (exit 2) unless ``path`` can be written: not a directory, in an existing directory, writable."""
    if os.path.isdir(path):
        parser.error(f"{option} {path}: is a directory")
    parent = os.path.dirname(os.path.realpath(path))  # a symlink's target is what gets written
    if not os.path.isdir(parent):
        parser.error(f"{option} {path}: the directory {parent} does not exist")
    try:
        check_writable(path)
    except OSError as exc:
        parser.error(f"{option} {path}: cannot be written ({exc.strerror or exc})")


def _check_plot(parser: argparse.ArgumentParser, path: str) -> None:
    """A parser error unless matplotlib can write the format of ``path``'s extension (tried on a tiny figure)."""
    try:
        fmt = _compare.plot_format(path)
    except ValueError as exc:
        parser.error(f"--plot {exc}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        parser.error("--plot needs matplotlib: pip install matplotlib")
    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    try:
        fig.savefig(io.BytesIO(), format=fmt)
    except Exception as exc:
        parser.error(f"--plot {path}: matplotlib cannot write {fmt} here: {type(exc).__name__}: {exc}")


def _check_sizes(parser: argparse.ArgumentParser, sizes: list[int], runners: list, dtype: str) -> None:
    """A parser error for a size that no selected solver runs, or whose input alone exceeds the memory."""
    solvers = [r for r in runners if r.kind != "floor"]
    if solvers and all(r.max_d is not None for r in solvers):
        top = max(r.max_d for r in solvers)
        above = [d for d in sizes if d > top]
        if above:
            limits = ", ".join(f"{r.label} {_format_size(r.max_d)}" for r in solvers)
            parser.error(f"size {above[0]} is above the size limit of every selected solver ({limits})")
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return
    itemsize = 4 if dtype == "float32" else 8
    for d in sizes:
        if memory > 0 and d * itemsize > memory:
            parser.error(
                f"size {d}: its {dtype} input alone needs {d * itemsize / 2**30:.3g} GiB, more than this "
                f"machine's {memory / 2**30:.3g} GiB of memory"
            )


def _json_safe(obj):
    """``obj`` with non-finite floats as None and numpy scalars as Python numbers (for strict JSON)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: str, record: dict) -> str | None:
    """Write ``record`` to ``path`` as strict JSON, all at once; the error text if that failed, else None."""
    try:
        text = json.dumps(_json_safe(record), indent=1, allow_nan=False)
        write_atomically(path, lambda f: f.write(text + "\n"))
    except (OSError, ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _warmup_limit(r, timeout: float) -> str:
    """`` (warm-up call > L s)`` for a timeout of the untimed call, whose limit includes the allowance."""
    return "" if r.limit_s is None or r.limit_s == timeout else f" (warm-up call > {r.limit_s:g} s)"


def _report(results: list, settings, wall: float, interrupted: bool, unavailable: dict) -> int:
    """Print the table and the summary lines; return the exit status of the results."""
    if results:
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
            + ", ".join(f"{r.runner.label} {r.family} d={r.d}{_warmup_limit(r, settings.timeout)}" for r in timeouts)
        )
    not_run = [r for r in results if r.status == "skipped"]
    if not_run:
        print(
            "not run after a timeout at a smaller size: "
            + ", ".join(f"{r.runner.label} {r.family} d={r.d}" for r in not_run)
        )
    failed = [r for r in results if r.failed]
    for r in failed:
        what = f"{r.runner.label} on {r.family} d={r.d}"
        if r.status == "error":
            print(f"ERROR: {what}: {r.error}")
        elif r.violation is None:  # no certificate: certify raised, or the result has the wrong shape
            print(f"FAIL: {what}: {r.error or 'no certificate'}")
        else:
            extra = f" ({r.error})" if r.error else ""
            print(f"FAIL: {what}: optimality certificate violated ({r.violation:.3g} x tolerance){extra}")
    counted = [r for r in failed if r.runner.kind in ("backend", "floor")]
    checked = [r for r in results if r.runner.kind != "floor" and r.certificate is not None]
    passed = sum(r.certificate == "ok" for r in checked)
    summary = f"{passed} of {len(checked)} checked results passed the optimality certificate"
    if interrupted:
        print(f"INTERRUPTED after {wall:.1f} s: {summary} so far")
        return EXIT_INTERRUPTED
    if counted:
        backends = sum(r.runner.kind == "backend" for r in counted)
        floors = len(counted) - backends
        what = f"{backends} backend runs" + (f" and {floors} floor (sort) runs" if floors else "")
        print(f"FAILED: {what} failed; {summary} ({wall:.1f} s)")
        return 1
    if not checked:
        print(
            "FAILED: no result was checked: every solver call timed out, was not run or raised "
            f"(nothing passed; {wall:.1f} s)"
        )
        return 1
    extra = f"; {len(timeouts)} timed out" if timeouts else ""
    extra += f", {len(not_run)} not run after a timeout" if not_run else ""
    print(f"{summary}; no registered backend failed{extra} ({wall:.1f} s)")
    return 0


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
    # Check the destinations now, not after a long run.
    if args.json:
        _check_output_path(parser, "--json", args.json)
    if args.plot:
        _check_output_path(parser, "--plot", args.plot)
        if args.json and os.path.abspath(args.json) == os.path.abspath(args.plot):
            parser.error(f"--json and --plot name the same file {args.json}")
        _check_plot(parser, args.plot)
    sizes = sorted(_flatten(args.sizes) or DEFAULT_SIZES)
    _check_sizes(parser, sizes, runners, args.dtype)
    families = _flatten(args.families) or list(DEFAULT_FAMILIES)
    for family in families:
        try:  # the hard families scale with lam: their values do not grow with d
            make_input(family, 3, args.lam, args.dtype)
        except ValueError as exc:
            parser.error(f"--lam {args.lam:g}: {exc}")
    settings = _compare.Settings(
        sizes=sizes,
        families=families,
        runners=runners,
        dtype=args.dtype,
        lam=args.lam,
        repeat=args.repeat,
        timeout=args.timeout,
        imports=list(args.imports),
        seed=args.seed,
        warmup_allowance=args.warmup_allowance,
    )
    print(
        f"wsprox {wsprox.__version__} compare: {settings.dtype}, lam={settings.lam:g}, "
        f"sizes {', '.join(map(str, settings.sizes))}; median of up to {settings.repeat} timed calls "
        f"(fewer once they take {_compare.TIME_BUDGET:g} s), each limited to {settings.timeout:g} s, after "
        "untimed warm-up calls (compile and calibration time is excluded).",
        flush=True,
    )
    total = sum(
        len(settings.families) for d in settings.sizes for r in settings.runners if r.max_d is None or d <= r.max_d
    )
    start = time.perf_counter()
    interrupted = False
    try:
        results = _compare.run(settings, progress=_Progress(total))
    except _compare.Interrupted as exc:
        results, interrupted = exc.results, True
        cases = len({(r.family, r.d) for r in results})
        print(f"\ninterrupted: the workers were killed; the {cases} cases finished before follow", file=sys.stderr)
    wall = time.perf_counter() - start
    status = _report(results, settings, wall, interrupted, unavailable)

    machine = _compare.machine_info()
    output_failed = False
    if args.json:
        record = {
            "schema": "wsprox-compare/3",
            "wsprox_version": wsprox.__version__,
            "settings": {
                "sizes": settings.sizes,
                "families": settings.families,
                "backends": [r.name for r in settings.runners if r.kind != "floor"],
                "dtype": settings.dtype,
                "lam": settings.lam,
                "repeat": settings.repeat,
                "timeout_s": settings.timeout,
                "warmup_allowance_s": settings.warmup_allowance,
                "time_budget_s": _compare.TIME_BUDGET,
                "seed": settings.seed,
                "certificate_rtol": _compare.CERTIFICATE_RTOL,
                "imports": settings.imports,
            },
            "runners": [
                {
                    "name": r.name,
                    "label": r.label,
                    "kind": r.kind,
                    "device": r.device,
                    "max_d": r.max_d,
                    "warm_each_case": r.warm_each_case,
                }
                for r in settings.runners
            ],
            "unavailable": unavailable,
            "machine": machine,
            "wall_s": wall,
            "interrupted": interrupted,
            "exit_status": status,
            "results": [r.as_dict() for r in results],
        }
        error = _write_json(args.json, record)
        if error:
            output_failed = True
            print(f"ERROR: could not write --json {args.json}: {error}", file=sys.stderr)
        else:
            print(f"wrote {args.json}")
    if args.plot:
        if not results:
            print(f"not written: {args.plot} (no finished case to plot)")
        else:
            gpu = f", {machine['gpu']}" if machine["gpu"] else ""
            title = (
                f"wsprox compare: {settings.dtype}, lam={settings.lam:g}; "
                f"{machine['cpu']} ({machine['cores']} cores{gpu})"
            )
            try:
                _compare.plot(results, args.plot, title, settings.timeout)
            except Exception as exc:
                output_failed = True
                print(f"ERROR: could not write --plot {args.plot}: {type(exc).__name__}: {exc}", file=sys.stderr)
            else:
                print(f"wrote {args.plot}")
    if output_failed and status == 0:
        status = 1
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
