"""The examples (examples/*.py) at smoke size: they run, write their outputs, and the numbers are sane.

Needs torch (for the digits example), scikit-learn, matplotlib and tqdm. Like test_torch.py, the module is
skipped when torch is missing unless WSPROX_REQUIRE_TORCH=1 (the tox env 'torch'), which turns missing
dependencies into errors.
"""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("WSPROX_REQUIRE_TORCH") == "1":
    import matplotlib  # noqa: F401
    import sklearn  # noqa: F401
    import torch  # noqa: F401
    import tqdm  # noqa: F401
else:
    pytest.importorskip("torch", reason="torch is not installed (the tox env 'torch' runs these tests)")
    for _name in ("sklearn", "matplotlib", "tqdm"):
        pytest.importorskip(_name, reason=f"the examples need {_name}")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    """Import examples/<name>.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"wsprox_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _assert_machine_recorded(saved):
    """The results file says where its run time was measured."""
    machine = saved["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["usable_cores"] >= 1
    assert machine["versions"]["numpy"] == np.__version__ and machine["versions"]["torch"] is not None
    assert saved["seconds"] > 0


def test_shuffled_digits_smoke(tmp_path):
    result = load_example("shuffled_digits").main(["--smoke", "--out", str(tmp_path)])
    for name in ("shuffled_digits.md", "shuffled_digits.json", "shuffled_digits_filters.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "shuffled_digits.json").read_text())
    assert saved["chosen_lam"] == result["chosen_lam"] and len(saved["runs"]) == len(result["runs"])
    _assert_machine_recorded(saved)
    table = (tmp_path / "shuffled_digits.md").read_text()
    assert "FC + WS" in table and "CNN" in table

    assert result["chosen_lam"] in result["config"]["lams"]
    chance = result["chance_accuracy"]
    assert {(row["model"], row["pixels"]) for row in result["summary"]} == {
        (m, p) for m in ("FC", "FC + WS", "CNN") for p in ("shuffled", "original")
    }
    for row in result["summary"]:
        mean, std = row["accuracy"]
        assert 0.0 <= mean <= 1.0 and std >= 0.0
        assert mean > 2 * chance, row  # a few epochs on digits are far above chance
        if row["model"] == "CNN":
            assert row["distinct_ratio"] is None
        else:
            assert 0.0 < row["distinct_ratio"][0] <= 1.0
            assert -1.0 <= row["neighbour_corr"][0] <= 1.0
            assert 0.0 <= row["constant_filters"][0] <= 1.0
            assert math.isnan(row["locality"][0]) or row["locality"][0] > 0
    for run in result["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0
        if run["model"] == "FC + WS":
            assert 0.0 < run["distinct_ratio"] <= 1.0 and 0.0 <= run["zero_ratio"] <= 1.0
    for row in result["sweep"]:
        assert 0.0 <= row["val_accuracy"] <= 1.0 and 0.0 < row["distinct_ratio"] <= 1.0


def test_shuffled_digits_filter_mapping():
    ex = load_example("shuffled_digits")
    perm = ex.pixel_permutation()
    images = ex.load_digits().data[:5].astype("float32")
    # A filter equal to an image, as seen by the net on shuffled pixels, maps back to that image.
    grids = ex.to_grid(images[:, perm], shuffled=True)
    assert (grids.reshape(5, -1) == images).all()
    assert ex.neighbour_correlation(grids) > 0.3  # digit strokes are spatially smooth
    # A 2x2 blob on a flat background is local; random noise is not local at all.
    blob = np.zeros((1, 8, 8))
    blob[0, 3:5, 4:6] = 1.0
    assert ex.locality(blob) < 0.5
    noise = np.random.default_rng(1).standard_normal((50, 8, 8))
    assert 0.9 < ex.locality(noise) < 1.1
    assert math.isnan(ex.locality(np.ones((2, 8, 8))))
    assert ex.constant_fraction(np.array([[1.0, 1.0], [1.0, 2.0]])) == 0.5


def test_sparse_regression_smoke(tmp_path):
    result = load_example("sparse_regression").main(["--smoke", "--out", str(tmp_path)])
    for name in ("sparse_regression.md", "sparse_regression.json", "sparse_regression.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    _assert_machine_recorded(json.loads((tmp_path / "sparse_regression.json").read_text()))
    cfg = result["config"]
    assert set(result["summary"]) == {str(n) for n in cfg["ns"]}
    for summary in result["summary"].values():
        for key in ("least_squares", "oracle", "ridge_best"):
            assert math.isfinite(summary[key][0]) and summary[key][0] >= 0
        for step in summary["path"]:
            assert math.isfinite(step["error"][0]) and math.isfinite(step["refit_error"][0])
            assert 1 <= step["distinct"][0] <= cfg["d"]
            assert step["not_converged"] == 0
    for problem in result["problems"]:
        assert problem["true_distinct"] == len(cfg["values"])
        # Knowing the true grouping beats plain least squares.
        assert problem["oracle"] < problem["least_squares"]
        distinct = [step["distinct"] for step in problem["path"]]
        assert distinct[0] <= distinct[-1]  # the largest lam ties the most


def test_prox_gradient_reaches_the_optimum():
    import wsprox

    ex = load_example("sparse_regression")

    X, y, _ = ex.make_problem(30, 25, 0.5, seed=3)
    n = X.shape[0]
    gram, rhs = X.T @ X / n, X.T @ y / n
    L = float(np.linalg.eigvalsh(gram)[-1])
    lam = 0.05

    def objective(w):
        return 0.5 * w @ gram @ w - rhs @ w + lam * float(wsprox.penalty(w))

    results = [
        ex.prox_gradient(gram, rhs, lam, L, np.zeros(30), tol=1e-10, max_iter=200_000, accelerate=acc)
        for acc in (True, False)
    ]
    for w, labels, _, converged in results:
        assert converged
        assert len(np.unique(w)) == labels.max() + 1
    # ISTA and FISTA agree, and no small perturbation lowers the objective.
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)
    w = results[0][0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert objective(w) <= objective(w + 1e-4 * rng.standard_normal(30)) + 1e-12
