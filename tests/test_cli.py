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
import statistics
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import wsprox
from wsprox import _baselines, _compare, cli
from wsprox._families import DEFAULT_FAMILIES, FAMILIES, make_input

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
    "argv",
    [
        [],
        ["nonsense"],
        ["compare", "--sizes", "1"],
        ["compare", "--sizes", "1.5"],
        ["compare", "--sizes", "1e3,abc"],
        ["compare", "--sizes", ","],
        ["compare", "--repeat", "0"],
        ["compare", "--timeout", "0"],
        ["compare", "--timeout", "-1"],
        ["compare", "--lam", "nan"],
        ["compare", "--families", "gauss,nope"],
        ["compare", "--dtype", "float16"],
        ["compare", "--backends", "no-such-backend"],
        ["compare", "--import", "no_such_module_for_wsprox_tests"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


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
    record = json.loads(json_path.read_text())
    return status, out, record, png_path


def test_small_run_table(small_run):
    status, out, record, _ = small_run
    assert status == 0, out
    assert "compile time is excluded" in out
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
    assert record["schema"] == "wsprox-compare/1"
    assert record["exit_status"] == 0
    settings = record["settings"]
    assert settings["sizes"] == [50, 300] and settings["families"] == ["gauss", "adversarial", "reversed"]
    assert settings["dtype"] == "float64" and settings["repeat"] == 2 and settings["lam"] == cli.DEFAULT_LAM
    machine = record["machine"]
    assert {"cpu", "cores", "platform", "versions", "gpu"} <= set(machine)
    assert machine["versions"]["numpy"] == np.__version__ and machine["versions"]["numba"]
    keys = {
        "backend", "label", "kind", "device", "family", "d", "dtype", "status", "runs", "times_s", "median_s",
        "floor_s", "ratio_to_sort", "max_abs_diff", "reference", "certificate", "certificate_violation",
        "clusters", "reference_clusters", "error", "note",
    }  # fmt: skip
    kinds = {r["name"]: r["kind"] for r in record["runners"]}
    assert kinds["sort-cpu"] == "floor" and kinds["numba"] == "backend"
    for name in EXTERNALS_INSTALLED:
        assert kinds[name] == "external"
    for r in record["results"]:
        assert set(r) == keys
        assert r["status"] == "ok" and 1 <= r["runs"] == len(r["times_s"]) <= 2
        assert r["median_s"] == pytest.approx(statistics.median(r["times_s"]))
        assert r["ratio_to_sort"] == pytest.approx(r["median_s"] / r["floor_s"])
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
import time

import numpy as np

import wsprox


def _slow(w, lam, l1, return_clusters):
    if w.shape[1] >= 1000:  # the warm-up (d = 64) and small cases stay fast
        time.sleep(60)
    return wsprox.prox(w, lam, axis=1, return_clusters=True, backend="numba")  # (x, labels)


def _wrong(w, lam, l1, return_clusters):  # the mean: wrong unless lam is huge
    return np.repeat(w.mean(axis=1, keepdims=True), w.shape[1], axis=1), None


def _broken(w, lam, l1, return_clusters):
    raise RuntimeError("boom")


wsprox.register_backend("slow_toy", _slow, description="numba, but sleeps at d >= 1000", replace=True)
wsprox.register_backend("wrong_toy", _wrong, description="returns the mean", replace=True)
wsprox.register_backend("broken_toy", _broken, description="always raises", replace=True)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An importable module registering toy backends (on sys.path, which spawned workers inherit)."""
    name = "wsprox_cli_test_plugin"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)
    for backend in ("slow_toy", "wrong_toy", "broken_toy"):
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
    for d in (1000, 2000):
        assert slow[d]["median"] == "> 1 s" and slow[d]["certificate"] == "timeout"
    assert all(r["certificate"] == "ok" for r in rows if r["backend"] == "numba")
    assert "timeouts (> 1 s, not failures): slow_toy gauss d=1000, slow_toy gauss d=2000" in out
    record = json.loads(json_path.read_text())
    notes = {r["d"]: r["note"] for r in record["results"] if r["backend"] == "slow_toy"}
    assert notes == {100: None, 1000: None, 2000: "not run: timed out at d=1000"}


def test_failures_give_exit_status_1(plugin):
    argv = ["compare", "--import", plugin, "--backends", "wrong_toy,broken_toy,numba", "--sizes", "20"]
    status, out = _run(argv + ["--families", "gauss", "--repeat", "1"])
    assert status == 1, out
    _, rows = _table(out)
    cert = {r["backend"]: r["certificate"] for r in rows}
    assert cert == {"np.argsort (floor)": "-", "wrong_toy": "FAIL", "broken_toy": "ERROR", "numba": "ok"}
    assert "FAIL: wrong_toy on gauss d=20: optimality certificate violated" in out
    assert "ERROR: broken_toy on gauss d=20: warm-up failed: RuntimeError: boom" in out


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
