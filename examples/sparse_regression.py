"""Linear regression whose true weights take a few distinct values: least squares against R-regularization.

Data: ``y = X w_true + noise`` with ``d = 200`` weights drawn from ``{-2, 0, 1, 3}``, a Gaussian design
``X`` (``n x d``, i.i.d. N(0, 1)) and Gaussian noise (std ``sigma = 1``), for several sample sizes ``n``
around ``d``. Estimators of ``w_true``, compared by ``||w_hat - w_true||_2``:

- least squares (``numpy.linalg.lstsq``: the minimum-norm solution when ``n < d``);
- the R-regularized estimator ``argmin 1/(2n) ||X w - y||^2 + lam R(w)``, computed by proximal gradient with
  the fixed step ``1/L`` (``L`` the largest eigenvalue of ``X^T X / n``) and the exact prox
  :func:`wsprox.prox`, accelerated (FISTA with gradient restart; ``--method ista`` for the plain
  iteration), warm-started along a log grid of ``lam`` (largest first) and iterated until the prox-gradient
  fixed-point residual is below ``1e-9 max(1, ||w||)`` (a certificate of optimality);
- the same followed by a least-squares refit with the found clusters tied (each group of equal entries
  of ``w_hat`` shares one free value), a standard debiasing step;
- references: the oracle (least squares knowing the true grouping) and ridge regression with its
  penalty tuned on the true error (an optimistic, oracle-tuned baseline).

Writes ``sparse_regression.{md,json,png}`` to ``--out`` (default ``examples/results/``). ``--smoke`` is
a tiny version (1 seed, small d, few lam) for CI.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import wsprox  # noqa: E402
from wsprox._files import save_figure_atomically, write_atomically  # noqa: E402
from wsprox._machine import machine_info  # noqa: E402

VALUES = (-2.0, 0.0, 1.0, 3.0)


@dataclass
class Config:
    """Problem sizes and solver settings.

    Attributes
    ----------
    d : int
        Number of weights.
    ns : list of int
        Sample sizes.
    sigma : float
        Noise standard deviation.
    seeds : list of int
        One problem (w_true, X, noise) per seed.
    lams : list of float
        Strengths of R (solved from the largest down, each warm-started at the previous solution).
    ridge_alphas : list of float
        Ridge penalties ``alpha`` of ``1/(2n)||Xw - y||^2 + alpha/2 ||w||^2``; the best is reported.
    tol : float
        Stop when ``||w - T(w)|| <= tol * max(1, ||w||)``, ``T`` the prox-gradient map.
    max_iter : int
        Iteration cap per ``lam`` (runs that hit it are counted as not converged).
    """

    d: int = 200
    ns: list[int] = field(default_factory=lambda: [150, 200, 400])
    sigma: float = 1.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    lams: list[float] = field(default_factory=lambda: [float(v) for v in np.logspace(1, -3, 13)])
    ridge_alphas: list[float] = field(default_factory=lambda: [float(v) for v in np.logspace(2, -5, 29)])
    tol: float = 1e-9
    max_iter: int = 50_000


SMOKE = Config(
    d=40,
    ns=[30, 80],
    seeds=[0],
    lams=[1.0, 0.1, 0.01],
    ridge_alphas=[1.0, 0.1, 0.01],
    max_iter=20_000,
)


def make_problem(d: int, n: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(X, y, w_true)``: weights from :data:`VALUES`, Gaussian design and noise.

    Parameters
    ----------
    d, n : int
        Number of weights and of samples.
    sigma : float
        Noise standard deviation.
    seed : int
        Seed of the draw (the weights depend only on ``seed`` and ``d``, not on ``n``).

    Returns
    -------
    X : numpy.ndarray
        ``(n, d)``.
    y : numpy.ndarray
        ``(n,)``.
    w_true : numpy.ndarray
        ``(d,)``.
    """
    w_true = np.random.default_rng([seed, d]).choice(VALUES, size=d)
    rng = np.random.default_rng([seed, d, n])
    X = rng.standard_normal((n, d))
    y = X @ w_true + sigma * rng.standard_normal(n)
    return X, y, w_true


def tied_least_squares(X: np.ndarray, y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Least squares with the entries of each group tied to one value (minimum norm if underdetermined).

    Parameters
    ----------
    X, y : numpy.ndarray
        Design and response.
    labels : numpy.ndarray
        Integer group id of every weight, ``0..K-1``.

    Returns
    -------
    numpy.ndarray
        The ``d`` weights, equal within each group.
    """
    k = int(labels.max()) + 1
    Xg = np.zeros((X.shape[0], k))
    np.add.at(Xg.T, labels, X.T)  # column g of Xg sums the columns of X in group g
    return np.linalg.lstsq(Xg, y, rcond=None)[0][labels]


def ridge_errors(X: np.ndarray, y: np.ndarray, w_true: np.ndarray, alphas) -> list[float]:
    """Errors of ridge regression ``(X^T X / n + alpha I)^{-1} X^T y / n`` for every ``alpha``."""
    n, d = X.shape
    gram, rhs = X.T @ X / n, X.T @ y / n
    return [float(np.linalg.norm(np.linalg.solve(gram + a * np.eye(d), rhs) - w_true)) for a in alphas]


def prox_gradient(gram, rhs, lam, L, w0, *, tol, max_iter, accelerate=True):
    """Minimize ``1/2 w^T gram w - rhs^T w + lam R(w)`` by proximal gradient with the fixed step ``1/L``.

    Parameters
    ----------
    gram, rhs : numpy.ndarray
        ``X^T X / n`` and ``X^T y / n``.
    lam : float
        Strength of R.
    L : float
        Lipschitz constant of the gradient (largest eigenvalue of ``gram``).
    w0 : numpy.ndarray
        Starting point.
    tol : float
        Stop when the fixed-point residual ``||w - T(w)||`` is below ``tol * max(1, ||w||)`` (checked every
        10 iterations), with ``T(w) = prox_{lam/L R}(w - grad(w)/L)``; ``T(w) = w`` exactly at minimizers.
    max_iter : int
        Iteration cap.
    accelerate : bool, optional
        FISTA momentum with gradient-based restart (O'Donoghue and Candes) instead of the plain iteration.

    Returns
    -------
    w : numpy.ndarray
        ``T`` of the last iterate (an output of the prox, so its ties are exact).
    labels : numpy.ndarray
        Cluster ids of ``w`` (groups of equal entries, in increasing order of value).
    iterations : int
        Iterations used.
    converged : bool
        Whether the residual test passed before ``max_iter``.
    """
    step_lam = lam / L

    def T(v):
        return wsprox.prox(v - (gram @ v - rhs) / L, step_lam)

    x = w0.copy()
    v, t = x.copy(), 1.0
    for it in range(1, max_iter + 1):
        x_new = T(v)
        if accelerate:
            t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            if np.dot(v - x_new, x_new - x) > 0:  # momentum points uphill: restart
                v, t = x_new.copy(), 1.0
            else:
                v, t = x_new + ((t - 1.0) / t_new) * (x_new - x), t_new
        else:
            v = x_new
        x = x_new
        if it % 10 == 0:
            tx = T(x)
            if np.linalg.norm(x - tx) <= tol * max(1.0, float(np.linalg.norm(x))):
                w, labels = wsprox.prox(x - (gram @ x - rhs) / L, step_lam, return_clusters=True)
                return w, labels, it, True
    w, labels = wsprox.prox(x - (gram @ x - rhs) / L, step_lam, return_clusters=True)
    return w, labels, max_iter, False


def solve_problem(cfg: Config, n: int, seed: int, accelerate: bool) -> dict:
    """All estimators on one problem; returns errors per estimator and, per lam, the R-path."""
    X, y, w_true = make_problem(cfg.d, n, cfg.sigma, seed)
    err = lambda w: float(np.linalg.norm(w - w_true))  # noqa: E731
    gram, rhs = X.T @ X / n, X.T @ y / n
    L = float(np.linalg.eigvalsh(gram)[-1])
    true_labels = np.searchsorted(np.unique(w_true), w_true)
    out = {
        "n": n,
        "seed": seed,
        "least_squares": err(np.linalg.lstsq(X, y, rcond=None)[0]),
        "oracle": err(tied_least_squares(X, y, true_labels)),
        "ridge_best": min(ridge_errors(X, y, w_true, cfg.ridge_alphas)),
        "true_distinct": int(true_labels.max()) + 1,
        "path": [],
    }
    w = np.zeros(cfg.d)
    for lam in sorted(cfg.lams, reverse=True):
        w, labels, iterations, converged = prox_gradient(
            gram, rhs, lam, L, w, tol=cfg.tol, max_iter=cfg.max_iter, accelerate=accelerate
        )
        out["path"].append(
            {
                "lam": lam,
                "error": err(w),
                "refit_error": err(tied_least_squares(X, y, labels)),
                "distinct": int(labels.max()) + 1,
                "iterations": iterations,
                "converged": converged,
            }
        )
    return out


def summarize(cfg: Config, problems: list[dict]) -> dict:
    """Mean and std over seeds, per sample size and per lam."""
    summary = {}
    for n in cfg.ns:
        runs = [p for p in problems if p["n"] == n]
        entry = {key: _ms([r[key] for r in runs]) for key in ("least_squares", "oracle", "ridge_best")}
        path = []
        for k, lam in enumerate(sorted(cfg.lams, reverse=True)):
            steps = [r["path"][k] for r in runs]
            path.append(
                {
                    "lam": lam,
                    "error": _ms([s["error"] for s in steps]),
                    "refit_error": _ms([s["refit_error"] for s in steps]),
                    "distinct": _ms([s["distinct"] for s in steps]),
                    "not_converged": sum(not s["converged"] for s in steps),
                    "max_iterations": max(s["iterations"] for s in steps),
                }
            )
        entry["path"] = path
        entry["best"] = min(path, key=lambda p: p["error"][0])
        entry["best_refit"] = min(path, key=lambda p: p["refit_error"][0])
        summary[str(n)] = entry
    return summary


def _ms(values) -> list[float]:
    arr = np.asarray(values, dtype=np.float64)
    return [float(arr.mean()), float(arr.std())]


def _fmt(pair, digits=3) -> str:
    return f"{pair[0]:.{digits}f} +- {pair[1]:.{digits}f}"


def markdown(cfg: Config, summary: dict) -> str:
    """Summary table (one row per n) and the full lam path."""
    norm = float(np.sqrt(np.mean(np.square(VALUES)) * cfg.d))
    values = ", ".join(f"{v:g}" for v in VALUES)
    lines = [
        f"d = {cfg.d} weights from {{{values}}}, Gaussian design, noise sigma = {cfg.sigma}; "
        f"||w_hat - w_true||_2 mean +- std over seeds {cfg.seeds} (for scale: ||w_true|| is about {norm:.0f}).",
        "",
        "| n | least squares | ridge (oracle-tuned) | R: best lam | R: error | R: distinct values "
        "| R + refit: best lam | R + refit: error | oracle grouping |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, s in summary.items():
        b, br = s["best"], s["best_refit"]
        lines.append(
            f"| {n} | {_fmt(s['least_squares'])} | {_fmt(s['ridge_best'])} | {b['lam']:.3g} | {_fmt(b['error'])} "
            f"| {b['distinct'][0]:.1f} | {br['lam']:.3g} | {_fmt(br['refit_error'])} | {_fmt(s['oracle'])} |"
        )
    lines += ["", "Full path (error of R / error after refit / number of distinct values, means over seeds):", ""]
    ns = list(summary)
    lines.append("| lam | " + " | ".join(f"n = {n}" for n in ns) + " |")
    lines.append("|---|" + "---|" * len(ns))
    for k, lam in enumerate(sorted(cfg.lams, reverse=True)):
        cells = []
        for n in ns:
            p = summary[n]["path"][k]
            flag = f" ({p['not_converged']} not converged)" if p["not_converged"] else ""
            cells.append(f"{p['error'][0]:.3f} / {p['refit_error'][0]:.3f} / {p['distinct'][0]:.0f}{flag}")
        lines.append(f"| {lam:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(cfg: Config, summary: dict, path: Path) -> None:
    """Error and number of distinct values against lam, one column per sample size."""
    ns = list(summary)
    fig, axes = plt.subplots(2, len(ns), figsize=(3.6 * len(ns), 5.2), sharex=True, squeeze=False)
    for col, n in enumerate(ns):
        s = summary[n]
        lams = np.array([p["lam"] for p in s["path"]])
        ax = axes[0, col]
        for key, label, style in (("error", "prox-grad with R", "o-"), ("refit_error", "R + tied refit", "s--")):
            mean = np.array([p[key][0] for p in s["path"]])
            std = np.array([p[key][1] for p in s["path"]])
            ax.plot(lams, mean, style, ms=3, label=label)
            ax.fill_between(lams, np.maximum(mean - std, 1e-3), mean + std, alpha=0.2)
        ax.axhline(s["least_squares"][0], color="k", lw=1.2, label="least squares")
        ax.axhline(s["ridge_best"][0], color="tab:green", ls="-.", lw=1, label="ridge (oracle-tuned)")
        ax.axhline(s["oracle"][0], color="tab:gray", ls=":", lw=1, label="oracle grouping")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"n = {n}, d = {cfg.d}", fontsize=9)
        if col == 0:
            ax.set_ylabel("||w_hat - w_true||")
        ax = axes[1, col]
        ax.plot(lams, [p["distinct"][0] for p in s["path"]], "o-", ms=3)
        ax.axhline(len(VALUES), color="tab:gray", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("lam")
        if col == 0:
            ax.set_ylabel("distinct values of w_hat")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomically(fig, path, dpi=80)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (1 seed, small d, 3 lam): a CI check")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", help="output folder")
    parser.add_argument("--method", choices=("fista", "ista"), default="fista", help="proximal gradient variant")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Run the comparison and write ``sparse_regression.{md,json,png}``.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    dict
        Everything written to the JSON file.
    """
    args = parse_args(argv)
    cfg = SMOKE if args.smoke else Config()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(n, seed) for n in cfg.ns for seed in cfg.seeds]
    problems = [
        solve_problem(cfg, n, seed, args.method == "fista") for n, seed in tqdm(jobs, desc="regression", unit="problem")
    ]
    elapsed = time.perf_counter() - t0
    summary = summarize(cfg, problems)
    table = markdown(cfg, summary)
    print(table)
    print(f"total time {elapsed:.1f} s")
    write_atomically(args.out / "sparse_regression.md", lambda f: f.write(table))
    figure(cfg, summary, args.out / "sparse_regression.png")
    result = {
        "config": asdict(cfg) | {"smoke": args.smoke, "method": args.method, "values": list(VALUES)},
        "summary": summary,
        "problems": problems,
        "seconds": elapsed,
        "machine": machine_info(),
    }
    write_atomically(args.out / "sparse_regression.json", lambda f: json.dump(result, f, indent=1))
    return result


if __name__ == "__main__":
    main()
