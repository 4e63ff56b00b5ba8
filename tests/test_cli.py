"""The ``wsprox`` command line: option parsing, ``compare`` runs (worker processes), ``backends``, ``python -m``.

The compare runs start one worker process per solver (spawn); numba kernels come from the
on-disk cache (NUMBA_CACHE_DIR), so each run costs a few seconds.
"""

import contextlib
import importlib.util
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import types
import zlib

import numpy as np
import pytest

import wsprox
from wsprox import _baselines, _compare, cli
from wsprox._families import DEFAULT_FAMILIES, FAMILIES, family_seed, make_input

HAVE_CVXPY = wsprox.backends()["cvxpy"].available
EXTERNALS_INSTALLED = [name for name, b in _baselines.BASELINES.items() if b.availability()[0]]


def _run(argv):
    """``(exit status, stdout)`` of ``wsprox ARGV`` run in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(argv)
    return status, out.getvalue()


def _table(text):
    """The compare table as a list of dicts (header -> cell), cut at the dashed line's columns."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-------"))
    spans = [m.span() for m in re.finditer(r"-+", lines[start])]

    def cells(line):
        return [line[a:b].strip() for a, b in spans]

    header = cells(lines[start - 1])
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            continue  # blank line between families
        if line[: spans[0][1]].strip() == "" or ":" in line[: spans[0][1]]:
            break
        row = dict(zip(header, cells(line)))
        if row["family"] not in FAMILIES:
            break
        rows.append(row)
    return header, rows


# ----------------------------------------------------------------------------- option parsing


def test_sizes_accept_comma_lists_and_scientific_notation():
    args = cli.build_parser().parse_args(["compare", "--sizes", "1e3,1e5", "100", "--families", "gauss,sorted"])
    assert cli._flatten(args.sizes) == [1000, 100000, 100]
    assert cli._flatten(args.families) == ["gauss", "sorted"]
    args = cli.build_parser().parse_args(["compare", "--families", "all", "--dtype", "float32", "--lam", "2.5e-1"])
    assert cli._flatten(args.families) == list(FAMILIES)
    assert args.dtype == "float32" and args.lam == 0.25
    args = cli.build_parser().parse_args(["compare"])
    assert args.sizes is None and args.families is None and args.backends is None
    assert args.timeout == cli.DEFAULT_TIMEOUT and args.repeat == cli.DEFAULT_REPEAT


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["compare", "--sizes", "1"], "--sizes: a size must be an integer >= 2, got '1'"),
        (["compare", "--sizes", "1.5"], "--sizes: a size must be an integer >= 2, got '1.5'"),
        (["compare", "--sizes", "1e3,abc"], "--sizes: not a size: 'abc'"),
        (["compare", "--sizes", ","], "--sizes: no size in ','"),
        (["compare", "--repeat", "0"], "--repeat: must be >= 1, got 0"),
        (["compare", "--timeout", "0"], "--timeout: must be a finite number > 0, got '0'"),
        (["compare", "--timeout", "-1"], "--timeout: must be a finite number > 0, got '-1'"),
        (["compare", "--lam", "nan"], "--lam: must be a finite number > 0, got 'nan'"),
        (["compare", "--families", "gauss,nope"], "--families: unknown family 'nope'; known: gauss,"),
        (["compare", "--dtype", "float16"], "--dtype: invalid choice: 'float16'"),
        (["compare", "--backends", "no-such-backend"], "unknown backend 'no-such-backend'; known: numba,"),
        (["compare", "--import", "no_such_module_for_wsprox_tests"], "ModuleNotFoundError"),
        (["compare", "--seed", "-1"], "--seed: must be a non-negative integer, got -1"),
        (["compare", "--seed", "1.5"], "--seed: not an integer: '1.5'"),
        (["compare", "--warmup-allowance", "-1"], "--warmup-allowance: must be a finite number >= 0, got '-1'"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err, err


def _parser_error(argv, capsys):
    """The error message of ``wsprox ARGV``, which must exit with status 2 before running anything."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "wsprox 0" not in captured.out  # the run did not start
    return " ".join(captured.err.split())


def test_seed_must_be_non_negative(capsys):
    assert "--seed: must be a non-negative integer, got -1" in _parser_error(["compare", "--seed", "-1"], capsys)
    args = cli.build_parser().parse_args(["compare", "--seed", "7"])
    assert args.seed == 7
    with pytest.raises(ValueError, match="non-negative integer"):
        family_seed("gauss", -1)


def test_output_paths_checked_before_the_run(tmp_path, capsys):
    base = ["compare", "--backends", "numba", "--sizes", "100", "--families", "gauss"]
    missing = tmp_path / "no-such-dir" / "x.json"
    err = _parser_error([*base, "--json", str(missing)], capsys)
    assert f"--json {missing}: the directory {missing.parent} does not exist" in err
    assert f"--json {tmp_path}: is a directory" in _parser_error([*base, "--json", str(tmp_path)], capsys)
    assert f"--plot {tmp_path}: is a directory" in _parser_error([*base, "--plot", str(tmp_path)], capsys)
    same = str(tmp_path / "x.png")
    assert "name the same file" in _parser_error([*base, "--json", same, "--plot", same], capsys)
    assert not missing.parent.exists() and not os.path.exists(same)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_unwritable_destination_refused_before_the_run_also_as_root(capsys):
    """/proc takes no new files, whoever asks (os.access says yes to root)."""
    base = ["compare", "--backends", "numba", "--sizes", "100", "--families", "gauss"]
    for option, path in (("--json", "/proc/wsprox-test.json"), ("--plot", "/proc/wsprox-test.png")):
        err = _parser_error([*base, option, path], capsys)
        assert f"{option} {path}: cannot be written (" in err


def test_destination_check_leaves_nothing_behind(tmp_path):
    from wsprox._files import check_writable

    check_writable(tmp_path / "new.json")
    (tmp_path / "old.json").write_text("kept")
    check_writable(tmp_path / "old.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    assert (tmp_path / "old.json").read_text() == "kept"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    check_writable(fifo)  # returns at once: a FIFO is not opened


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="needs /dev/stdout")
@pytest.mark.parametrize("name", ["/dev/stdout", "/proc/self/fd/1"])
def test_writing_to_stdout_redirected_into_a_file_appends(tmp_path, name):
    """``--json /dev/stdout >> log``: the log keeps what was there and what is printed around the JSON."""
    if name.startswith("/proc") and not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    log = tmp_path / "log.txt"
    log.write_text("old line\n")
    code = (
        "from wsprox._files import check_writable, write_atomically\n"
        "print('before', flush=True)\n"
        f"check_writable({name!r})\n"
        f"write_atomically({name!r}, lambda f: f.write('{{}}\\n'))\n"
        "print('after')\n"
    )
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-c", code], stdout=out, check=True, env=_subprocess_env())
    assert log.read_text() == "old line\nbefore\n{}\nafter\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]


def test_destination_check_follows_a_link_with_a_long_name(tmp_path):
    from wsprox._files import check_writable, write_atomically

    link = tmp_path / ("l" * 245)
    link.symlink_to(tmp_path / "short.json")
    check_writable(link)  # the temporary file is named after the target, as when writing
    write_atomically(link, lambda f: f.write("{}"))
    assert (tmp_path / "short.json").read_text() == "{}"


def test_plot_format_from_extension(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    base = ["compare", "--backends", "numba", "--sizes", "100", "--families", "gauss"]
    for name in ("out.xyz", "out"):
        err = _parser_error([*base, "--plot", str(tmp_path / name)], capsys)
        assert "the format is chosen by it" in err and ".png" in err and ".svg" in err, err
    assert _compare.plot_format("a/b.SVG") == "svg" and _compare.plot_format("x.pdf") == "pdf"
    assert not list(tmp_path.iterdir())


def test_sizes_above_every_limit_refused(capsys):
    err = _parser_error(["compare", "--sizes", "100,1e20", "--families", "gauss", "--backends", "numba"], capsys)
    assert "size 100000000000000000000 is above the size limit of every selected solver (numba 2^32 - 1)" in err
    if HAVE_CVXPY:
        err = _parser_error(["compare", "--sizes", "2000", "--backends", "cvxpy"], capsys)
        assert "size 2000 is above the size limit of every selected solver (cvxpy 1000)" in err
    if "scipy" in EXTERNALS_INSTALLED:  # no size limit, but the input alone cannot fit in memory
        err = _parser_error(["compare", "--sizes", "1e20", "--backends", "scipy"], capsys)
        assert "size 100000000000000000000: its float64 input alone needs" in err and "of memory" in err


def test_families():
    for name in FAMILIES:
        for dtype in ("float64", "float32"):
            w = make_input(name, 11, 0.1, dtype)
            assert w.shape == (11,) and w.dtype == dtype and w.flags.c_contiguous, name
            np.testing.assert_array_equal(w, make_input(name, 11, 0.1, dtype))  # deterministic
    assert set(DEFAULT_FAMILIES) <= set(FAMILIES)
    ramp = make_input("adversarial", 10, 0.1)
    np.testing.assert_array_equal(ramp[:5], 0.0)
    np.testing.assert_allclose(ramp[5:], 2.25 * 0.1 / 10 * np.arange(1, 6))
    clusters = {name: len(np.unique(wsprox.prox(make_input(name, 500, 0.1), 0.1))) for name in FAMILIES}
    assert clusters["sorted"] == 500 and clusters["reversed"] == 1 and clusters["huge-lam"] == 1
    with pytest.raises(ValueError, match="unknown family"):
        make_input("nope", 3, 0.1)


# ----------------------------------------------------------------------------- one small run, many checks


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    json_path, png_path = tmp / "out.json", tmp / "out.png"
    argv = ["compare", "--sizes", "50,300", "--families", "gauss,adversarial,reversed", "--repeat", "2"]
    argv += ["--json", str(json_path)]
    if importlib.util.find_spec("matplotlib") is not None:
        argv += ["--plot", str(png_path)]
    status, out = _run(argv)
    record = _strict_json(json_path)
    return status, out, record, png_path


def _strict_json(path):
    """The JSON in ``path``, refusing NaN and infinities (which strict JSON does not have)."""

    def refuse(token):
        raise ValueError(f"not valid JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_small_run_table(small_run):
    status, out, record, _ = small_run
    assert status == 0, out
    assert "compile and calibration time is excluded" in out
    header, rows = _table(out)
    assert header == list(_compare.TABLE_HEADER)
    seen = {(r["backend"], r["family"], int(r["d"])) for r in rows}
    expected = ["np.argsort (floor)"] + [n for n, i in wsprox.backends().items() if i.available]
    expected += [_baselines.BASELINES[n].label for n in EXTERNALS_INSTALLED]
    for label in expected:
        for family in ("gauss", "adversarial", "reversed"):
            for d in (50, 300):
                if label == "cvxpy" and d > _compare.CVXPY_QUICK_MAX_D:
                    assert (label, family, d) not in seen
                else:
                    assert (label, family, d) in seen, (label, family, d)
    assert len(rows) == len(record["results"])
    for row in rows:
        if row["backend"] == "np.argsort (floor)":
            assert row["certificate"] == "-" and row["x sort"] == "1.00"
            continue
        assert row["certificate"] == "ok", out
        d = int(row["d"])
        assert row["ref"] == ("cvxpy" if HAVE_CVXPY and d <= _compare.CVXPY_QUICK_MAX_D else "numba")
        ref_row = next(r for r in rows if (r["backend"], r["family"], r["d"]) == (row["ref"], row["family"], row["d"]))
        assert ref_row["max |x - ref|"] == "(reference)"
        assert row["clusters"] == ref_row["clusters"], row
        if row["family"] in ("adversarial", "reversed"):
            assert row["clusters"] == "1"
        if row["max |x - ref|"] != "(reference)":
            assert float(row["max |x - ref|"]) < 1e-6, row
    assert "FAIL" not in out and "ERROR" not in out
    assert "passed the optimality certificate" in out
    if HAVE_CVXPY:
        assert f"cvxpy (d > {_compare.CVXPY_QUICK_MAX_D})" in out
    for name, info in wsprox.backends().items():
        if not info.available:
            assert f"not available: {name}" in out


def test_small_run_json(small_run):
    _, _, record, _ = small_run
    assert record["schema"] == "wsprox-compare/3"
    assert record["exit_status"] == 0 and record["interrupted"] is False
    settings = record["settings"]
    assert settings["sizes"] == [50, 300] and settings["families"] == ["gauss", "adversarial", "reversed"]
    assert settings["dtype"] == "float64" and settings["repeat"] == 2 and settings["lam"] == cli.DEFAULT_LAM
    assert settings["seed"] == 0 and settings["warmup_allowance_s"] == _compare.WARMUP_ALLOWANCE
    machine = record["machine"]
    assert {"cpu", "cores", "platform", "versions", "gpu"} <= set(machine)
    assert machine["versions"]["numpy"] == np.__version__ and machine["versions"]["numba"]
    keys = {
        "backend", "label", "kind", "device", "family", "d", "dtype", "seed", "status", "runs", "times_s",
        "warmup_s", "median_s", "floor_s", "ratio_to_sort", "max_abs_diff", "reference", "certificate",
        "certificate_violation", "clusters", "reference_clusters", "error", "note", "details", "limit_s",
    }  # fmt: skip
    kinds = {r["name"]: r["kind"] for r in record["runners"]}
    assert kinds["sort-cpu"] == "floor" and kinds["numba"] == "backend"
    warm = {r["name"]: r["warm_each_case"] for r in record["runners"]}
    assert warm["numba"] is True and warm["sort-cpu"] is False
    for name in ["cvxpy", *EXTERNALS_INSTALLED]:
        if name in warm:
            assert warm[name] is False, name
    for name in EXTERNALS_INSTALLED:
        assert kinds[name] == "external"
    for r in record["results"]:
        assert set(r) == keys
        assert r["status"] == "ok" and 1 <= r["runs"] == len(r["times_s"]) <= 2
        assert r["seed"] == family_seed(r["family"], 0)
        assert (r["warmup_s"] is not None) == warm[r["backend"]]
        assert r["median_s"] == pytest.approx(statistics.median(r["times_s"]))
        assert r["ratio_to_sort"] == pytest.approx(r["median_s"] / r["floor_s"])
        if r["backend"] == "numba":  # the sort engine its worker calibrated for this d
            assert r["details"] == {"sort_engine": r["details"]["sort_engine"]}
            assert r["details"]["sort_engine"] in ("radix", "numpy")
        else:
            assert r["details"] == {}
        if r["kind"] == "floor":
            assert r["certificate"] is None and r["clusters"] is None
        else:
            assert r["certificate"] == "ok" and r["certificate_violation"] <= 1
            assert r["clusters"] == r["reference_clusters"]
            assert r["max_abs_diff"] < 1e-6


def test_small_run_plot(small_run):
    pytest.importorskip("matplotlib")
    _, out, _, png_path = small_run
    assert f"wrote {png_path}" in out
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that tqdm draws (it stays silent on pipes)."""

    def isatty(self):
        return True


def test_progress_bar_counts_each_case_once(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    progress = cli._Progress(3)
    assert progress.bar is not None and not progress.bar.disable
    for k, text in enumerate(["numba gauss d=50", "cvxpy gauss d=50", "numba sorted d=50"]):
        progress(text)
        assert progress.bar.n == k  # a case counts once the next one starts (or at the end)
        assert progress.bar.desc == text
    progress(None)
    assert progress.bar.n == 3 and progress.bar.disable  # closed
    assert "numba gauss d=50" in sys.stderr.getvalue()


def test_progress_bar_without_tqdm_is_silent(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    progress = cli._Progress(2)
    assert progress.bar is None
    progress("numba gauss d=50")
    progress(None)
    assert sys.stderr.getvalue() == ""


def test_compare_feeds_the_progress_bar_every_case(monkeypatch):
    bars = []

    class Recording(cli._Progress):
        def __init__(self, total):
            super().__init__(total)
            self.texts = []
            bars.append(self)

        def __call__(self, text):
            self.texts.append(text)
            super().__call__(text)

    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setattr(cli, "_Progress", Recording)
    backends = "numba,cvxpy" if HAVE_CVXPY else "numba"
    argv = ["compare", "--sizes", "50,2000", "--families", "gauss,sorted", "--backends", backends, "--repeat", "1"]
    status, _ = _run(argv)
    assert status == 0
    (bar,) = bars
    labels = ["np.argsort (floor)", "numba"] + (["cvxpy"] if HAVE_CVXPY else [])
    expected = [
        f"{label} {family} d={d}"
        for d in (50, 2000)
        for family in ("gauss", "sorted")
        for label in labels
        if not (label == "cvxpy" and d > wsprox.backends()["cvxpy"].max_size)  # above its limit: no case, no step
    ]
    assert bar.texts == [*expected, None]
    assert bar.bar.total == len(expected) and bar.bar.n == len(expected)


def test_float32_run():
    status, out = _run(
        ["compare", "--sizes", "100", "--families", "gauss", "--backends", "numba", "--dtype", "float32"]
    )
    assert status == 0, out
    _, rows = _table(out)
    numba = next(r for r in rows if r["backend"] == "numba")
    assert numba["certificate"] == "ok" and numba["ref"] in ("cvxpy", "numba")
    assert float(numba["max |x - ref|"]) < 1e-5  # float32 rounding of the float64 reference


# ----------------------------------------------------------------------------- plugins: timeouts and failures

_PLUGIN = '''
"""Toy backends for tests/test_cli.py, registered when imported (``wsprox compare --import``)."""
import os
import time
import warnings

import numpy as np

import wsprox

_seen = set()  # sizes called before, in this process


def _numba(w, lam):
    return wsprox.prox(w, lam, axis=1, return_clusters=True, backend="numba")  # (x, labels)


def _slow(w, lam, l1, return_clusters):
    d = w.shape[1]
    first = d not in _seen
    _seen.add(d)
    if d >= 1000 and not first:  # the untimed call on a case's input is fast, the timed ones sleep
        time.sleep(60)
    return _numba(w, lam)


def _cold(w, lam, l1, return_clusters):  # like a JIT: slow on the first call at each size
    d = w.shape[1]
    if d not in _seen:
        _seen.add(d)
        time.sleep(float(os.environ.get("WSPROX_TEST_COLD_S", "0.6")))
    return _numba(w, lam)


def _wrong(w, lam, l1, return_clusters):  # the mean: wrong unless lam is huge
    return np.repeat(w.mean(axis=1, keepdims=True), w.shape[1], axis=1), None


def _broken(w, lam, l1, return_clusters):
    raise RuntimeError("boom")


def _nan(w, lam, l1, return_clusters):
    x, labels = _numba(w, lam)
    x[0, 0] = np.nan
    return x, labels


def _hang(w, lam, l1, return_clusters):  # at d >= 1000: says so in a file, then hangs
    if w.shape[1] >= 1000:
        with open(os.environ["WSPROX_TEST_HANG_FILE"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    return _numba(w, lam)


def _warn(w, lam, l1, return_clusters):
    warnings.warn("toy warning", RuntimeWarning)
    return _numba(w, lam)


def _sabotage(w, lam, l1, return_clusters):  # makes a directory where the JSON is to be written
    path = os.environ.get("WSPROX_TEST_SABOTAGE")
    if path and w.shape[1] >= 100 and not os.path.exists(path):
        os.mkdir(path)
    return _numba(w, lam)


for name, solve, text in [
    ("slow_toy", _slow, "numba, but sleeps at d >= 1000 except on the first call"),
    ("cold_toy", _cold, "numba, but the first call at each size is slow"),
    ("wrong_toy", _wrong, "returns the mean"),
    ("broken_toy", _broken, "always raises"),
    ("nan_toy", _nan, "numba with a NaN"),
    ("hang_toy", _hang, "hangs at d >= 1000"),
    ("sabotage_toy", _sabotage, "numba, and blocks the JSON path"),
    ("warn_toy", _warn, "numba, with a warning"),
]:
    wsprox.register_backend(name, solve, description=text, replace=True)
'''
_TOYS = ("slow_toy", "cold_toy", "wrong_toy", "broken_toy", "nan_toy", "hang_toy", "sabotage_toy", "warn_toy")
_PLUGIN_NAME = "wsprox_cli_test_plugin"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An importable module registering toy backends (on sys.path, which spawned workers inherit)."""
    (tmp_path / f"{_PLUGIN_NAME}.py").write_text(textwrap.dedent(_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield _PLUGIN_NAME
    sys.modules.pop(_PLUGIN_NAME, None)
    for backend in _TOYS:
        if backend in wsprox.backends():
            wsprox.unregister_backend(backend)


def test_timeout_kills_and_reports(plugin, tmp_path):
    json_path = tmp_path / "t.json"
    argv = ["compare", "--import", plugin, "--backends", "slow_toy,numba", "--sizes", "100,1000,2000"]
    argv += ["--families", "gauss", "--repeat", "1", "--timeout", "1", "--json", str(json_path)]
    status, out = _run(argv)
    assert status == 0, out  # timeouts are not failures
    _, rows = _table(out)
    slow = {int(r["d"]): r for r in rows if r["backend"] == "slow_toy"}
    assert slow[100]["certificate"] == "ok"
    assert slow[1000]["median"] == "> 1 s" and slow[1000]["certificate"] == "timeout"
    # not run after the timeout at d=1000: shown as such, not as a measured timeout
    assert slow[2000]["median"] == "-" and slow[2000]["certificate"] == "not run (timed out at d=1000)"
    assert all(r["certificate"] == "ok" for r in rows if r["backend"] == "numba")
    assert "timeouts (> 1 s, not failures): slow_toy gauss d=1000\n" in out
    assert "not run after a timeout at a smaller size: slow_toy gauss d=2000\n" in out
    assert "no registered backend failed; 1 timed out, 1 not run after a timeout" in out
    record = _strict_json(json_path)
    mine = {r["d"]: r for r in record["results"] if r["backend"] == "slow_toy"}
    assert {d: r["status"] for d, r in mine.items()} == {100: "ok", 1000: "timeout", 2000: "skipped"}
    assert {d: r["note"] for d, r in mine.items()} == {100: None, 1000: None, 2000: "not run: timed out at d=1000"}
    assert mine[2000]["runs"] == 0 and mine[2000]["median_s"] is None
    assert mine[1000]["limit_s"] == 1.0 and mine[100]["limit_s"] is None


def test_plot_legend_names_every_runner_and_timeouts_do_not_hide_each_other(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    figures = []
    monkeypatch.setattr(_compare, "save_figure_atomically", lambda fig, path, **kw: figures.append(fig))
    a = _compare.Runner("a", "a", "backend", "cpu")
    b = _compare.Runner("b", "b (only timeouts)", "backend", "cpu")
    c = _compare.Runner("c", "c (warm-up timeout)", "backend", "cpu")
    results = [
        _compare.Result(a, "gauss", 100, "float64", times=[1e-3]),
        _compare.Result(a, "gauss", 1000, "float64", status="timeout", limit_s=0.5),
        _compare.Result(b, "gauss", 1000, "float64", status="timeout", limit_s=0.5),
        _compare.Result(c, "gauss", 1000, "float64", status="timeout", limit_s=2.5),
    ]
    _compare.plot(results, str(tmp_path / "p.png"), "title", 0.5)
    (fig,) = figures
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "a",
        "b (only timeouts)",
        "c (warm-up timeout)",
        "timed out (drawn at the limit)",
    ]
    triangles = [tuple(line.get_xydata()[0]) for line in fig.axes[0].get_lines() if line.get_marker() == "^"]
    assert len(set(triangles)) == 3  # three runners timed out at d = 1000: three distinct points
    assert sorted(y for _, y in triangles) == [0.5, 0.5, 2.5]  # each at the limit it passed
    cells = {r.runner.name: _compare.table_cells(r, 0.5)[4] for r in results if r.status == "timeout"}
    assert cells == {"a": "> 500 ms", "b": "> 500 ms", "c": "> 2.5 s"}


def test_first_call_at_a_size_is_not_timed(plugin, tmp_path, monkeypatch):
    # cold_toy sleeps 0.6 s on its first call at each size, like a JIT compiling or a
    # calibration; it must not be timed (before, it made every case a timeout here)
    monkeypatch.setenv("WSPROX_TEST_COLD_S", "0.6")
    json_path = tmp_path / "c.json"
    argv = ["compare", "--import", plugin, "--backends", "cold_toy", "--sizes", "100,200", "--families", "gauss"]
    argv += ["--repeat", "1", "--timeout", "0.4", "--json", str(json_path)]
    status, out = _run(argv)
    assert status == 0, out
    record = _strict_json(json_path)
    cold = [r for r in record["results"] if r["backend"] == "cold_toy"]
    assert [r["d"] for r in cold] == [100, 200]
    for r in cold:
        assert r["status"] == "ok" and r["certificate"] == "ok", r
        assert r["times_s"][0] < 0.3 and r["warmup_s"] >= 0.6, r  # the sleep is in the untimed call
    assert "timeouts" not in out

    # the untimed call is limited to --timeout + --warmup-allowance (here 0.4 s < 0.6 s)
    status, out = _run([*argv, "--warmup-allowance", "0"])
    record = _strict_json(json_path)
    cold = {r["d"]: r for r in record["results"] if r["backend"] == "cold_toy"}
    assert cold[100]["status"] == "timeout" and cold[200]["status"] == "skipped"
    assert cold[100]["note"] == "the untimed warm-up call on this input took more than 0.4 s"
    assert cold[100]["limit_s"] == 0.4
    # a warm-up timeout is shown against the limit it passed, --timeout + --warmup-allowance
    argv = [a if a != "0.4" else "0.2" for a in argv]
    status, out = _run([*argv, "--warmup-allowance", "0.2"])
    _, rows = _table(out)
    assert [r["median"] for r in rows if r["backend"] == "cold_toy"] == ["> 400 ms", "-"]
    assert "timeouts (> 0.2 s, not failures): cold_toy gauss d=100 (warm-up call > 0.4 s)\n" in out
    cold = {r["d"]: r for r in _strict_json(json_path)["results"] if r["backend"] == "cold_toy"}
    assert cold[100]["limit_s"] == 0.4 and cold[100]["status"] == "timeout"
    assert status == 1 and "FAILED: no result was checked" in out  # nothing but timeouts


def test_failures_give_exit_status_1(plugin):
    argv = ["compare", "--import", plugin, "--backends", "wrong_toy,broken_toy,numba", "--sizes", "20"]
    status, out = _run(argv + ["--families", "gauss", "--repeat", "1"])
    assert status == 1, out
    _, rows = _table(out)
    cert = {r["backend"]: r["certificate"] for r in rows}
    assert cert == {"np.argsort (floor)": "-", "wrong_toy": "FAIL", "broken_toy": "ERROR", "numba": "ok"}
    assert "FAIL: wrong_toy on gauss d=20: optimality certificate violated" in out
    assert "ERROR: broken_toy on gauss d=20: warm-up failed: RuntimeError: boom" in out
    assert "FAILED: 2 backend runs failed; 1 of 2 checked results passed" in out


def test_non_finite_result_gives_valid_json(plugin, tmp_path):
    json_path, svg_path = tmp_path / "n.json", tmp_path / "n.svg"
    argv = ["compare", "--import", plugin, "--backends", "nan_toy,numba", "--sizes", "100", "--families", "gauss"]
    argv += ["--repeat", "1", "--json", str(json_path)]
    have_mpl = importlib.util.find_spec("matplotlib") is not None
    if have_mpl:
        argv += ["--plot", str(svg_path)]
    status, out = _run(argv)
    assert status == 1, out
    assert "FAIL: nan_toy on gauss d=100: certify raised ValueError: x must be finite" in out
    assert "x tolerance" not in out  # no made-up violation
    record = _strict_json(json_path)  # valid JSON: no NaN
    nan = next(r for r in record["results"] if r["backend"] == "nan_toy")
    assert nan["certificate"] == "FAIL" and nan["certificate_violation"] is None
    assert nan["max_abs_diff"] is None  # NaN in the result: null, not NaN
    assert nan["error"].startswith("certify raised ValueError")
    if have_mpl:  # the format follows the extension
        assert f"wrote {svg_path}" in out
        text = svg_path.read_text()
        assert text.startswith("<?xml") and "<svg" in text


def test_worker_warnings_go_to_the_note(plugin, tmp_path):
    json_path = tmp_path / "w.json"
    argv = ["compare", "--import", plugin, "--backends", "warn_toy,numba", "--sizes", "50", "--families", "gauss"]
    status, out = _run(argv + ["--repeat", "2", "--json", str(json_path)])
    assert status == 0, out
    notes = {r["backend"]: r["note"] for r in _strict_json(json_path)["results"]}
    assert notes["warn_toy"] == "RuntimeWarning: toy warning"  # once, though raised at every call
    assert notes["numba"] is None


def test_reference_is_the_first_certified_candidate():
    """cvxpy's result is the reference only where it passes the certificate; else numba's is."""
    w = np.array([0.0, 3.0, 1e12])
    exact = wsprox.prox(w, 1.0, backend="numba")
    settings = types.SimpleNamespace(dtype="float64")

    def case(cvxpy_certificate, numba_certificate="ok"):
        results = []
        for name, x, certificate in [
            ("cvxpy", np.array([2.0, 2.0, 1e12]), cvxpy_certificate),
            ("numba", exact, numba_certificate),
        ]:
            r = _compare.Result(_compare.Runner(name, name, "backend", "cpu"), "gauss", 3, "float64", 0)
            r.x, r.certificate = x, certificate
            results.append(r)
        return results

    name, ref = _compare._reference(case("FAIL"), settings, "gauss", 3, 0, {})
    assert name == "numba" and np.array_equal(ref, exact)
    name, ref = _compare._reference(case("ok"), settings, "gauss", 3, 0, {})
    assert name == "cvxpy" and ref.tolist() == [2.0, 2.0, 1e12]
    # no candidate certified: the first one, as before
    name, _ = _compare._reference(case("FAIL", "FAIL"), settings, "gauss", 3, 0, {})
    assert name == "cvxpy"


def test_family_input_independent_of_order(tmp_path):
    seeds, clusters = {}, {}
    for families in ("gauss", "sorted,gauss", "clustered,binary,gauss"):
        json_path = tmp_path / "f.json"
        argv = ["compare", "--backends", "numba", "--sizes", "300", "--families", families, "--repeat", "1"]
        status, out = _run([*argv, "--json", str(json_path)])
        assert status == 0, out
        results = _strict_json(json_path)["results"]
        gauss = next(r for r in results if r["backend"] == "numba" and r["family"] == "gauss")
        seeds[families], clusters[families] = gauss["seed"], gauss["clusters"]
    assert set(seeds.values()) == {family_seed("gauss", 0)}
    w = make_input("gauss", 300, cli.DEFAULT_LAM, seed=family_seed("gauss", 0))  # the recorded seed reproduces it
    assert set(clusters.values()) == {len(np.unique(wsprox.prox(w, cli.DEFAULT_LAM)))}
    # stable (crc32 of the name, not Python's salted hash()) and distinct for distinct families and seeds
    assert family_seed("gauss", 0) == zlib.crc32(b"gauss")
    assert family_seed("gauss", 1) == 2**32 + zlib.crc32(b"gauss")
    assert len({family_seed(f, s) for f in FAMILIES for s in (0, 1, 2)}) == 3 * len(FAMILIES)


def test_output_write_failure_reported_without_losing_the_rest(plugin, tmp_path, monkeypatch):
    # sabotage_toy makes a directory at the JSON path during the run (after the up-front check)
    json_path, png_path = tmp_path / "s.json", tmp_path / "s.png"
    monkeypatch.setenv("WSPROX_TEST_SABOTAGE", str(json_path))
    argv = ["compare", "--import", plugin, "--backends", "sabotage_toy", "--sizes", "100", "--families", "gauss"]
    argv += ["--repeat", "1", "--json", str(json_path)]
    have_mpl = importlib.util.find_spec("matplotlib") is not None
    if have_mpl:
        argv += ["--plot", str(png_path)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status, out = _run(argv)
    assert status == 1, out
    assert json_path.is_dir()
    assert f"ERROR: could not write --json {json_path}: IsADirectoryError" in err.getvalue()
    _, rows = _table(out)  # the table is there
    assert {r["backend"]: r["certificate"] for r in rows}["sabotage_toy"] == "ok"
    if have_mpl:  # and the plot
        assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_plot_keeps_the_old_file_and_is_reported(tmp_path, monkeypatch):
    """savefig failing half-way (after the up-front check): the old --plot file stays, no temp file, status 1."""
    from matplotlib.figure import Figure  # in the test extra

    real_savefig = Figure.savefig

    def failing_savefig(self, target, **kwargs):
        if isinstance(target, io.BytesIO):  # the up-front check
            return real_savefig(self, target, **kwargs)
        target.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    png_path, json_path = tmp_path / "p.png", tmp_path / "p.json"
    png_path.write_bytes(b"old plot")
    argv = ["compare", "--backends", "numba", "--sizes", "100", "--families", "gauss", "--repeat", "1"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status, out = _run([*argv, "--plot", str(png_path), "--json", str(json_path)])
    assert status == 1, out
    assert f"ERROR: could not write --plot {png_path}: OSError: disk full" in err.getvalue()
    assert png_path.read_bytes() == b"old plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.png"]  # no temporary file left
    assert _strict_json(json_path)["results"]  # the JSON was written


def test_write_atomically_replaces_whole_or_not_at_all(tmp_path):
    from wsprox._files import write_atomically

    path = tmp_path / "r.json"
    path.write_text("old")

    def half_then_fail(f):
        f.write("{half")
        raise ValueError("broken record")

    with pytest.raises(ValueError, match="broken record"):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    write_atomically(path, lambda f: f.write("new"))
    assert path.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # what open(path, "w") gives
    write_atomically(tmp_path / "b.bin", lambda f: f.write(b"\x00\x01"), binary=True)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path, lambda f: f.write("x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "r.json"]


def test_write_atomically_follows_links_and_writes_into_fifos(tmp_path):
    import stat
    import threading

    from wsprox._files import write_atomically

    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomically(link, lambda f: f.write("new"))
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link stays, its target is replaced
    assert target.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["target.json"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    write_atomically(fifo, lambda f: f.write("through the pipe"))
    reader.join(10)
    assert received == ["through the pipe"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the FIFO, not a file put in its place


def test_huge_timeout_and_lam_overflowing_the_inputs(capsys):
    status, out = _run(
        ["compare", "--sizes", "10", "--families", "gauss", "--backends", "numba", "--timeout", "1e9"]
        + ["--warmup-allowance", "1e300"]
    )
    assert status == 0 and "1 of 1 checked results passed" in out
    message = _parser_error(["compare", "--sizes", "10", "--families", "spike", "--lam", "1e308"], capsys)
    assert "--lam 1e+308: the input family 'spike' at lam=1e+308 overflows float64" in message
    message = _parser_error(["compare", "--dtype", "float32", "--families", "spike", "--lam", "1e38"], capsys)
    assert "overflows float32" in message
    with pytest.raises(ValueError, match="the input family 'spike' at lam=1e\\+308 overflows float64"):
        make_input("spike", 5, 1e308)


def test_save_figure_atomically_uses_the_extension(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from wsprox._files import save_figure_atomically

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1])
    save_figure_atomically(fig, tmp_path / "f.PNG", dpi=10)
    save_figure_atomically(fig, tmp_path / "f.svg")
    assert (tmp_path / "f.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "f.svg").read_bytes()
    with pytest.raises(ValueError, match="'.*nofmt' has no extension"):
        save_figure_atomically(fig, tmp_path / "nofmt")
    (tmp_path / "g.png").write_bytes(b"old")
    with pytest.raises(ValueError, match="Format 'nope' is not supported"):
        save_figure_atomically(fig, tmp_path / "g.nope")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.PNG", "f.svg", "g.png"]


def test_exit_status_of_floor_errors_and_empty_runs():
    settings = _compare.Settings(sizes=[100], families=["gauss"], runners=[])
    floor = _compare.Runner("sort-cpu", "np.argsort (floor)", "floor", "cpu")
    numba = _compare.Runner("numba", "numba", "backend", "cpu")

    def status_of(results):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            status = cli._report(results, settings, 1.0, False, {})
        return status, out.getvalue()

    ok = _compare.Result(numba, "gauss", 100, "float64", times=[1e-3], certificate="ok", violation=0.0)
    broken_floor = _compare.Result(floor, "gauss", 100, "float64", status="error", error="MemoryError: too big")
    status, out = status_of([ok])
    assert status == 0 and "1 of 1 checked results passed the optimality certificate" in out
    status, out = status_of([broken_floor, ok])
    assert status == 1 and "ERROR: np.argsort (floor) on gauss d=100: MemoryError: too big" in out
    assert "FAILED: 0 backend runs and 1 floor (sort) runs failed" in out
    for results in ([_compare.Result(numba, "gauss", 100, "float64", status="timeout")], []):
        status, out = status_of(results)
        assert status == 1 and "FAILED: no result was checked" in out and "no registered backend failed" not in out


def test_timeout_on_everything_is_not_a_pass():
    argv = ["compare", "--backends", "numba", "--sizes", "100", "--families", "gauss", "--timeout", "1e-6"]
    status, out = _run(argv)
    assert status == 1, out
    assert "FAILED: no result was checked" in out and "no registered backend failed" not in out


def _alive(pid):
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_cleanly_with_partial_results(plugin, tmp_path):
    # Ctrl-C on a terminal sends SIGINT to the whole process group: the command and its workers
    hang_file, json_path = tmp_path / "hang.pid", tmp_path / "i.json"
    env = _subprocess_env(WSPROX_TEST_HANG_FILE=str(hang_file))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    argv = [sys.executable, "-m", "wsprox", "compare", "--import", plugin, "--backends", "numba,hang_toy"]
    argv += ["--sizes", "100,1000", "--families", "gauss", "--repeat", "1", "--json", str(json_path)]
    # As in a terminal's foreground job, SIGINT starts at its default disposition: pytest itself may have
    # inherited it ignored (a background job of a non-interactive shell), and the command would inherit that.
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not (hang_file.exists() and hang_file.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == cli.EXIT_INTERRUPTED, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted: the workers were killed; the 1 cases finished before follow" in err
    _, rows = _table(out)  # the finished case d=100, not the one in progress
    assert {(r["backend"], r["d"], r["certificate"]) for r in rows} == {
        ("np.argsort (floor)", "100", "-"),
        ("numba", "100", "ok"),
        ("hang_toy", "100", "ok"),
    }
    assert "INTERRUPTED after" in out
    record = _strict_json(json_path)
    assert record["interrupted"] is True and record["exit_status"] == cli.EXIT_INTERRUPTED
    assert sorted({r["d"] for r in record["results"]}) == [100]
    pid = int(hang_file.read_text())  # the hanging worker was killed
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


# ----------------------------------------------------------------------------- external baselines


def test_externals_absent_without_error(monkeypatch, capsys):
    real = importlib.util.find_spec
    hidden = {"scipy", "sklearn", "torchsort"}
    monkeypatch.setattr(
        _baselines.importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )
    runners, unavailable = _compare.select_runners(None)
    assert not [r for r in runners if r.kind == "external"]
    assert {"scipy (external)", "sklearn (external)", "torchsort (external)"} <= set(unavailable)
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--backends", "scipy"])
    assert exc.value.code == 2
    assert "not available here: scipy is not installed" in capsys.readouterr().err


def test_externals_present_when_installed():
    runners, unavailable = _compare.select_runners(None)
    names = {r.name for r in runners if r.kind == "external"}
    assert names == set(EXTERNALS_INSTALLED)
    for name in ("scipy", "sklearn"):
        if importlib.util.find_spec(name) is not None:
            assert name in names
            assert _baselines.BASELINES[name].label.endswith("(external)")
    if importlib.util.find_spec("torchsort") is None:
        assert "torchsort (external)" in unavailable


def test_registered_backend_hides_a_baseline_of_the_same_name():
    def solve(w, lam, l1, return_clusters):
        return wsprox.prox(w, lam, l1=l1, axis=1, backend="numba"), None

    wsprox.register_backend("scipy", solve, description="a user's solver named like the baseline")
    try:
        for names in (None, ["scipy"]):
            runners, unavailable = _compare.select_runners(names)
            scipy_runners = [r for r in runners if r.name == "scipy"]
            assert [(r.kind, r.label) for r in scipy_runners] == [("backend", "scipy")]
            assert unavailable["scipy (external)"] == "hidden by the registered backend 'scipy' of the same name"
    finally:
        wsprox.unregister_backend("scipy")
    runners, unavailable = _compare.select_runners(None)
    assert "scipy (external)" not in unavailable or "hidden" not in unavailable["scipy (external)"]


@pytest.mark.parametrize("name", ["scipy", "sklearn"])
def test_external_pipeline_matches_numba(name):
    if name not in EXTERNALS_INSTALLED:
        pytest.skip(f"{name} not installed")
    solve = _baselines.BASELINES[name].make()
    for family in ("gauss", "adversarial", "binary"):
        for dtype in ("float64", "float32"):
            w = make_input(family, 300, 0.1, dtype)
            x = solve(w, 0.1)
            assert x.dtype == w.dtype
            np.testing.assert_allclose(x, wsprox.prox(w, 0.1), atol=1e-6 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("convention", ["ascending", "descending", "garbage"])
def test_torchsort_identity_and_convention_check(convention, monkeypatch):
    """A stand-in torchsort (soft ranks from the numba prox) checks the identity and its convention detection."""
    torch = pytest.importorskip("torch")
    fake = type(sys)("torchsort")

    def soft_rank(values, regularization="l2", regularization_strength=1.0):
        assert regularization == "l2"
        w = values.numpy()[0]
        d, a = w.size, regularization_strength
        lam = a * (d - 1) / 2
        r = (w - wsprox.prox(w, lam) + lam * (d + 1) / (d - 1)) / a  # ascending ranks
        if convention == "descending":
            r = d + 1 - r
        elif convention == "garbage":
            r = r[::-1].copy()
        return torch.from_numpy(r).reshape(1, d)

    fake.soft_rank = soft_rank
    monkeypatch.setitem(sys.modules, "torchsort", fake)
    if convention == "garbage":
        with pytest.raises(RuntimeError, match="neither rank convention"):
            _baselines.BASELINES["torchsort"].make()
        return
    solve = _baselines.BASELINES["torchsort"].make()
    w = make_input("gauss-heavy", 200, 0.3)
    np.testing.assert_allclose(solve(w, 0.3), wsprox.prox(w, 0.3), atol=1e-9)


# ----------------------------------------------------------------------------- other subcommands, python -m


def test_backends_table(capsys):
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    for name, info in wsprox.backends().items():
        line = next(line for line in out.splitlines() if line.startswith(f"| `{name}` |"))
        assert (line.split(" | ")[1] == "yes") == info.available
    assert cli._format_size(2**32 - 1) == "2^32 - 1"
    assert cli._format_size(1000) == "1000"


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert wsprox.__version__ in capsys.readouterr().out


def _subprocess_env(**extra):
    """Environment in which ``python -m wsprox`` imports the wsprox that these tests import (installed or not)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(wsprox.__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def test_python_m_wsprox_help(tmp_path):
    env = _subprocess_env(NUMBA_DISABLE_JIT="1")
    proc = subprocess.run(
        [sys.executable, "-m", "wsprox", "compare", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: wsprox compare" in proc.stdout
    for option in ("--sizes", "--families", "--backends", "--dtype", "--lam", "--repeat", "--timeout", "--json"):
        assert option in proc.stdout
    assert "--plot" in proc.stdout and "--import" in proc.stdout
    text = " ".join(proc.stdout.split()).lower()
    assert "compilation" in text and "timeouts are reported, not failures" in text

    proc = subprocess.run(
        [sys.executable, "-m", "wsprox"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2
    assert "usage: wsprox" in proc.stderr


def test_python_m_wsprox_compare(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "wsprox", "compare", "--sizes", "30", "--families", "gauss", "--backends", "numba"],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "numba" in proc.stdout
    assert "passed the optimality certificate" in proc.stdout
