"""The ``wsprox`` command line: ``compare`` and ``backends`` in-process, ``python -m wsprox`` in a subprocess."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import wsprox
from wsprox import cli


def _available():
    return [name for name, info in wsprox.backends().items() if info.available and "numpy" in info.array_kinds]


def _table_rows(text):
    """Header and rows of the compare table as lists of cells, cut at the dashed line's columns."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-------"))
    spans = [m.span() for m in re.finditer(r"-+", lines[start])]

    def cells(line):
        return [line[a:b].strip() for a, b in spans]

    rows = []
    for line in lines[start + 1 :]:
        row = cells(line)
        if row[0] not in wsprox.backends():
            break
        rows.append(row)
    return cells(lines[start - 1]), rows


def test_compare_small_run(capsys):
    status = cli.main(["compare", "--sizes", "20", "150", "--repeat", "2"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "compile time is excluded" in out
    header, rows = _table_rows(out)
    assert header[:3] == ["backend", "family", "d"]
    assert "certificate" in header
    seen = {(r[0], r[1], int(r[2])) for r in rows}
    for name in _available():
        for family in cli.FAMILIES:
            for d in (20, 150):
                assert (name, family, d) in seen, out
    for cells in rows:
        assert cells[-1] == "ok", out
    assert "FAIL" not in out and "ERROR" not in out
    assert "passed the optimality certificate" in out
    for name, info in wsprox.backends().items():
        if not info.available:
            assert f"not available: {name}" in out


def test_compare_reference_and_skips(capsys):
    """Above the reference's max_size the float64 numba result is the reference, and that backend is skipped."""
    infos = wsprox.backends()
    limited = [name for name in _available() if infos[name].max_size is not None and infos[name].max_size < 2000]
    status = cli.main(["compare", "--sizes", "2000", "--repeat", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    _, rows = _table_rows(out)
    assert {r[0] for r in rows}.isdisjoint(limited)
    for name in limited:
        assert f"{name} (d=2000 > max_size" in out
    numba_rows = [r for r in rows if r[0] == "numba"]
    assert len(numba_rows) == len(cli.FAMILIES)
    for cells in numba_rows:
        assert "(reference)" in cells and "numba" in cells


def test_compare_diff_column_is_small(capsys):
    status = cli.main(["compare", "--sizes", "64", "--repeat", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    _, rows = _table_rows(out)
    for cells in rows:
        diff = cells[5]
        if diff not in ("(reference)", "-"):
            assert float(diff) < 1e-6, out


def test_compare_fails_on_bad_certificate(capsys, monkeypatch):
    class Bad:
        ok = False

    monkeypatch.setattr(wsprox, "certify", lambda *args, **kwargs: Bad(), raising=False)
    status = cli.main(["compare", "--sizes", "10", "--repeat", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL" in out


def test_compare_fails_when_a_backend_raises(capsys, monkeypatch):
    def broken(w, lam, l1, return_clusters):
        raise RuntimeError("boom")

    wsprox.register_backend("broken_for_cli_test", broken, description="always raises")
    try:
        status = cli.main(["compare", "--sizes", "10", "--repeat", "1"])
    finally:
        wsprox.unregister_backend("broken_for_cli_test")
    out = capsys.readouterr().out
    assert status == 1
    assert "broken_for_cli_test" in out and "RuntimeError: boom" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["compare", "--sizes", "1"],
        ["compare", "--sizes", "1.5"],
        ["compare", "--repeat", "0"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_sizes_accept_scientific_notation():
    args = cli.build_parser().parse_args(["compare", "--sizes", "1e3", "100"])
    assert args.sizes == [1000, 100]


def test_families():
    rng = np.random.default_rng(0)
    for family, (_, generate) in cli.FAMILIES.items():
        w = generate(10, 0.1, rng)
        assert w.shape == (10,) and w.dtype == np.float64, family
    ramp = cli.FAMILIES["ramp"][1](10, 0.1, rng)
    np.testing.assert_array_equal(ramp[:5], 0.0)
    np.testing.assert_allclose(ramp[5:], 2.25 * 0.1 / 10 * np.arange(1, 6))


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
    assert "--sizes" in proc.stdout and "--repeat" in proc.stdout
    assert "compile" in proc.stdout

    proc = subprocess.run(
        [sys.executable, "-m", "wsprox"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2
    assert "usage: wsprox" in proc.stderr


def test_python_m_wsprox_compare(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "wsprox", "compare", "--sizes", "30", "--repeat", "1"],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "numba" in proc.stdout
    assert "passed the optimality certificate" in proc.stdout
