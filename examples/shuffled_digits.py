"""Weight-sharing regularization on shuffled-pixel digits (small-scale version of the paper's experiment).

scikit-learn's 8x8 digits (shipped with scikit-learn, no download) are fed to three models, once with the
original pixel order and once with the pixels permuted by one fixed random permutation:

- ``FC``: a fully connected net 64 -> hidden -> 10, trained with plain SGD;
- ``FC + WS``: the same net with weight-sharing regularization ``lam * R(W1)`` on its first weight matrix
  (the whole matrix is one problem, as in the paper), applied as a proximal step after every optimizer step
  by :class:`wsprox.torch.WeightSharing`; ``lam`` is picked by a small sweep on a validation split;
- ``CNN``: a small convolutional net on the 8x8 grid (whatever order the pixels come in).

The fully connected nets (with or without R, which is permutation invariant) are equivariant to a pixel
permutation, so their accuracy cannot depend on the order; the CNN's can. The question is whether weight
sharing lets the FC net recover something convolution-like from shuffled pixels. The script writes a
markdown table (test accuracy mean +- std over seeds, distinct-weight ratio of the first layer, a filter
locality score), a JSON file with every number, and a figure of first-layer filters mapped back to the 8x8
grid (the permutation undone for display).

Run ``python examples/shuffled_digits.py`` (full size, a few minutes on 2 CPU cores) or with ``--smoke``
(1 seed, few epochs, well under a minute). Outputs go to ``--out`` (default ``examples/results/``).
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
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from tqdm import tqdm  # noqa: E402

import wsprox.torch as wt  # noqa: E402
from wsprox._files import save_figure_atomically, write_atomically  # noqa: E402
from wsprox._machine import machine_info  # noqa: E402

PERM_SEED = 20240502  # the one fixed pixel permutation
SPLIT_SEED = 0  # train/test split
VAL_SEED = 1  # train/validation split of the lam sweep
N_CLASSES = 10
SIDE = 8


@dataclass
class Config:
    """Sizes and training settings of one run of the script.

    Attributes
    ----------
    seeds : list of int
        Seeds of the weight initialization and of the minibatch order.
    epochs : int
        Training epochs of every model.
    hidden : int
        Width of the fully connected net's hidden layer.
    batch_size : int
        Minibatch size.
    lr : float
        Initial learning rate of SGD (momentum 0.9, cosine decay to 0).
    lams : list of float
        Candidate weight-sharing strengths of the sweep.
    sweep_seeds : list of int
        Seeds of the sweep (validation accuracy is averaged over them).
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    epochs: int = 60
    hidden: int = 64
    batch_size: int = 32
    lr: float = 0.05
    lams: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1])
    sweep_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


SMOKE = Config(seeds=[0], epochs=4, lams=[1e-2, 3e-2], sweep_seeds=[0])


# --------------------------------------------------------------------------- data


def pixel_permutation() -> np.ndarray:
    """The fixed permutation: shuffled image ``s`` has ``s[:, j] = x[:, perm[j]]``.

    Returns
    -------
    numpy.ndarray
        A permutation of ``0..63``.
    """
    return np.random.default_rng(PERM_SEED).permutation(SIDE * SIDE)


def load_data(shuffled: bool) -> dict[str, torch.Tensor]:
    """The digits as float32 tensors in ``[0, 1]``, split into train and test (70/30, stratified).

    Parameters
    ----------
    shuffled : bool
        Permute the pixels by :func:`pixel_permutation`.

    Returns
    -------
    dict
        ``x_train``, ``y_train``, ``x_test``, ``y_test``; images flattened to 64 values.
    """
    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    if shuffled:
        x = x[:, pixel_permutation()]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=SPLIT_SEED
    )
    return {
        "x_train": torch.from_numpy(x_tr),
        "y_train": torch.from_numpy(y_tr).long(),
        "x_test": torch.from_numpy(x_te),
        "y_test": torch.from_numpy(y_te).long(),
    }


def validation_split(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split the training set into a fit part (80%) and a validation part used as "test" by the sweep."""
    idx = np.arange(len(data["y_train"]))
    fit, val = train_test_split(idx, test_size=0.2, stratify=data["y_train"].numpy(), random_state=VAL_SEED)
    fit, val = torch.from_numpy(fit), torch.from_numpy(val)
    return {
        "x_train": data["x_train"][fit],
        "y_train": data["y_train"][fit],
        "x_test": data["x_train"][val],
        "y_test": data["y_train"][val],
    }


# --------------------------------------------------------------------------- models


class FullyConnected(torch.nn.Module):
    """64 -> hidden -> 10 with a ReLU; ``fc1.weight`` is the regularized layer."""

    def __init__(self, hidden: int):
        super().__init__()
        self.fc1 = torch.nn.Linear(SIDE * SIDE, hidden)
        self.fc2 = torch.nn.Linear(hidden, N_CLASSES)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class SmallCNN(torch.nn.Module):
    """Two 3x3 conv layers (16 and 32 channels, each followed by 2x2 max pooling) and a linear classifier."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Linear(32 * 2 * 2, N_CLASSES)

    def forward(self, x):
        return self.head(self.features(x.reshape(-1, 1, SIDE, SIDE)).flatten(1))


# --------------------------------------------------------------------------- training


def train(model_kind: str, data: dict[str, torch.Tensor], seed: int, cfg: Config, lam: float = 0.0) -> dict:
    """Train one model with SGD and return its test accuracy, first-layer metrics and weights.

    Parameters
    ----------
    model_kind : {"fc", "cnn"}
        Which model.
    data : dict
        As returned by :func:`load_data` or :func:`validation_split`.
    seed : int
        Seeds the initialization and the minibatch order.
    cfg : Config
        Training settings.
    lam : float, optional
        Weight-sharing strength on ``fc1.weight`` (only for ``"fc"``; 0 trains plainly).

    Returns
    -------
    dict
        ``accuracy``; for ``"fc"`` also ``distinct_ratio``, ``zero_ratio`` and ``weight`` (the first weight
        matrix as a numpy array, hidden x 64).
    """
    torch.manual_seed(seed)
    model = FullyConnected(cfg.hidden) if model_kind == "fc" else SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    n = len(data["y_train"])
    steps_per_epoch = -(-n // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    ws = wt.WeightSharing(opt, [("fc1.weight", model.fc1.weight)], lam) if lam > 0 else None
    gen = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(data["x_train"][batch]), data["y_train"][batch]).backward()
            opt.step()  # the WeightSharing hook applies the prox with this step's learning rate
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(data["x_test"]).argmax(1) == data["y_test"]).float().mean())
    result = {"accuracy": accuracy}
    if model_kind == "fc":
        weight = model.fc1.weight.detach()
        if ws is not None:
            result.update(ws.metrics()["fc1.weight"])
            ws.remove()
        else:
            result["distinct_ratio"] = torch.unique(weight).numel() / weight.numel()
            result["zero_ratio"] = float((weight == 0).float().mean())
        result["weight"] = weight.numpy().copy()
    return result


# --------------------------------------------------------------------------- analysis


def to_grid(weight: np.ndarray, shuffled: bool) -> np.ndarray:
    """Rows of the first weight matrix as 8x8 images in the original pixel layout.

    Parameters
    ----------
    weight : numpy.ndarray
        ``(hidden, 64)``; column ``j`` multiplies input pixel ``j`` as the network saw it.
    shuffled : bool
        Whether the network saw permuted pixels (then column ``j`` belongs to pixel ``perm[j]``).

    Returns
    -------
    numpy.ndarray
        ``(hidden, 8, 8)``.
    """
    grid = np.empty_like(weight)
    if shuffled:
        grid[:, pixel_permutation()] = weight
    else:
        grid[:] = weight
    return grid.reshape(-1, SIDE, SIDE)


def neighbour_correlation(grids: np.ndarray) -> float:
    """Locality score of filters: correlation of the weights of 4-adjacent pixels, pooled over filters.

    Each filter's mean is removed first. Spatially smooth (localized, convolution-like) filters score
    close to 1, filters unrelated to the pixel grid close to 0.

    Parameters
    ----------
    grids : numpy.ndarray
        ``(n_filters, 8, 8)`` in the original pixel layout.

    Returns
    -------
    float
    """
    g = grids - grids.mean(axis=(1, 2), keepdims=True)
    a = np.concatenate([g[:, :, :-1].ravel(), g[:, :-1, :].ravel()])
    b = np.concatenate([g[:, :, 1:].ravel(), g[:, 1:, :].ravel()])
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _spread(grids: np.ndarray) -> np.ndarray:
    """Radius of gyration of each filter's squared deviation from its median (NaN for constant filters)."""
    dev = grids - np.median(grids.reshape(len(grids), -1), axis=1)[:, None, None]
    energy = dev * dev
    total = energy.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        energy = energy / total[:, None, None]
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    cy = (energy * ys).sum(axis=(1, 2))
    cx = (energy * xs).sum(axis=(1, 2))
    var = (energy * ((ys - cy[:, None, None]) ** 2 + (xs - cx[:, None, None]) ** 2)).sum(axis=(1, 2))
    return np.where(total > 0, np.sqrt(np.maximum(var, 0.0)), np.nan)


def locality(grids: np.ndarray, n_shuffles: int = 20) -> float:
    """Spatial concentration of filters relative to the same weights placed at random pixels.

    For every non-constant filter: the radius of gyration of its squared deviation from its median (its
    "background" value, the value most weights are tied to under weight sharing), divided by the mean of
    the same quantity over ``n_shuffles`` random rearrangements of its pixels (fixed seed). The mean ratio
    is returned: about 1 for filters unrelated to the pixel grid, smaller for localized filters. Because
    the baseline keeps each filter's values, a filter that is merely sparse does not count as localized.

    Parameters
    ----------
    grids : numpy.ndarray
        ``(n_filters, 8, 8)`` in the original pixel layout.
    n_shuffles : int, optional
        Random rearrangements of the baseline.

    Returns
    -------
    float
        NaN if every filter is constant.
    """
    flat = grids.reshape(len(grids), -1)
    rng = np.random.default_rng(0)
    baseline = np.mean(
        [_spread(flat[:, rng.permutation(flat.shape[1])].reshape(grids.shape)) for _ in range(n_shuffles)], axis=0
    )
    ratio = _spread(grids) / baseline
    return float(np.nanmean(ratio)) if np.isfinite(ratio).any() else float("nan")


def constant_fraction(weight: np.ndarray) -> float:
    """Fraction of rows (filters) whose entries are all equal (the unit only sees the total ink)."""
    return float(np.mean(weight.max(axis=1) == weight.min(axis=1)))


def mean_std(values) -> tuple[float, float]:
    """Mean and (population) standard deviation of a list of numbers."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def sweep_lam(cfg: Config, progress) -> tuple[float, list[dict]]:
    """Pick ``lam`` for FC + WS by mean validation accuracy on shuffled pixels (ties: the larger lam).

    Returns
    -------
    lam : float
        The chosen strength.
    rows : list of dict
        Per candidate: ``lam``, ``val_accuracy`` (mean, std) and ``distinct_ratio`` (mean).
    """
    data = validation_split(load_data(shuffled=True))
    rows = []
    for lam in cfg.lams:
        runs = []
        for seed in cfg.sweep_seeds:
            runs.append(train("fc", data, seed, cfg, lam))
            progress.update()
        acc, acc_std = mean_std([r["accuracy"] for r in runs])
        rows.append(
            {
                "lam": lam,
                "val_accuracy": acc,
                "val_accuracy_std": acc_std,
                "distinct_ratio": mean_std([r["distinct_ratio"] for r in runs])[0],
            }
        )
    best = max(rows, key=lambda r: (round(r["val_accuracy"], 6), r["lam"]))
    return best["lam"], rows


# --------------------------------------------------------------------------- output


def markdown_table(summary: list[dict], sweep: list[dict], lam: float, cfg: Config) -> str:
    """The results as markdown: the main table and the lam sweep."""
    lines = [
        f"Test accuracy on {len(load_data(False)['y_test'])} held-out digits, mean +- std over seeds "
        f"{cfg.seeds}; {cfg.epochs} epochs; FC hidden width {cfg.hidden}; WS lam = {lam:g} on fc1.weight.",
        "",
        "| model | pixels | test accuracy | distinct-weight ratio (fc1) | constant filters "
        "| neighbour corr. of filters | locality of filters |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(pair, digits):
        return "-" if pair is None else f"{pair[0]:.{digits}f} +- {pair[1]:.{digits}f}"

    for row in summary:
        cells = [cell(row["accuracy"], 4), cell(row["distinct_ratio"], 4), cell(row["constant_filters"], 3)]
        cells += [cell(row["neighbour_corr"], 3), cell(row["locality"], 3)]
        lines.append(f"| {row['model']} | {row['pixels']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"lam sweep (FC + WS, shuffled pixels, validation split of the training set, seeds {cfg.sweep_seeds}):",
        "",
        "| lam | validation accuracy | distinct-weight ratio (fc1) |",
        "|---|---|---|",
    ]
    for row in sweep:
        mark = " (chosen)" if row["lam"] == lam else ""
        lines.append(
            f"| {row['lam']:g}{mark} | {row['val_accuracy']:.4f} +- {row['val_accuracy_std']:.4f} | "
            f"{row['distinct_ratio']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def filter_figure(weights: dict[str, np.ndarray], path: Path) -> None:
    """Save the first-layer filters of seed 0 (plain FC and FC + WS on shuffled pixels) as 8x8 images.

    Panels: plain FC (permutation undone), FC + WS (permutation undone), FC + WS as the network sees them
    (shuffled order). Each filter is drawn as its deviation from its median (blue < 0 < red, own symmetric
    scale); constant filters are gray.
    """
    panels = [
        ("FC (shuffled pixels, shown unshuffled)", to_grid(weights["fc"], True)),
        ("FC + WS (shuffled pixels, shown unshuffled)", to_grid(weights["fc_ws"], True)),
        ("FC + WS, in the shuffled order the net sees", to_grid(weights["fc_ws"], False)),
    ]
    n_filters = weights["fc"].shape[0]
    cols = int(np.ceil(np.sqrt(n_filters)))
    rows = -(-n_filters // cols)
    fig = plt.figure(figsize=(3.8 * len(panels), 3.8 * rows / cols + 0.4))
    for subfig, (title, grids) in zip(fig.subfigures(1, len(panels), wspace=0.05), panels):
        subfig.suptitle(title, fontsize=8)
        axes = subfig.subplots(rows, cols, gridspec_kw={"wspace": 0.08, "hspace": 0.08})
        for k, ax in enumerate(np.ravel(axes)):
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(grids):
                ax.axis("off")
                continue
            dev = grids[k] - np.median(grids[k])
            bound = float(np.abs(dev).max())
            if bound == 0:
                ax.set_facecolor("0.75")
            else:
                ax.imshow(dev, cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
    save_figure_atomically(fig, path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (1 seed, few epochs): a CI check")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", help="output folder")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1 is fastest)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Run the experiment and write ``shuffled_digits.{md,json}`` and ``shuffled_digits_filters.png``.

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
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    n_runs = len(cfg.lams) * len(cfg.sweep_seeds) + 2 * 3 * len(cfg.seeds)
    with tqdm(total=n_runs, desc="shuffled digits", unit="run") as progress:
        lam, sweep = sweep_lam(cfg, progress)
        summary, per_seed, filters = [], [], {}
        for model, kind, model_lam in (("FC", "fc", 0.0), ("FC + WS", "fc", lam), ("CNN", "cnn", 0.0)):
            for shuffled in (True, False):
                data = load_data(shuffled)
                runs = []
                for seed in cfg.seeds:
                    run = train(kind, data, seed, cfg, model_lam)
                    progress.update()
                    if kind == "fc":
                        grids = to_grid(run["weight"], shuffled)
                        run["constant_filters"] = constant_fraction(run["weight"])
                        run["neighbour_corr"] = neighbour_correlation(grids)
                        run["locality"] = locality(grids)
                        if shuffled and seed == cfg.seeds[0]:
                            filters["fc_ws" if model_lam > 0 else "fc"] = run["weight"]
                    runs.append(run)
                    record = {"model": model, "pixels": "shuffled" if shuffled else "original", "seed": seed}
                    per_seed.append(record | {k: v for k, v in run.items() if k != "weight"})
                summary.append(
                    {
                        "model": model,
                        "pixels": "shuffled" if shuffled else "original",
                        "accuracy": mean_std([r["accuracy"] for r in runs]),
                        **{
                            key: mean_std([r[key] for r in runs]) if kind == "fc" else None
                            for key in ("distinct_ratio", "constant_filters", "neighbour_corr", "locality")
                        },
                    }
                )
    elapsed = time.perf_counter() - t0

    table = markdown_table(summary, sweep, lam, cfg)
    print(table)
    print(f"total time {elapsed:.1f} s")
    write_atomically(args.out / "shuffled_digits.md", lambda f: f.write(table))
    filter_figure(filters, args.out / "shuffled_digits_filters.png")
    result = {
        "config": asdict(cfg) | {"smoke": args.smoke, "perm_seed": PERM_SEED, "threads": args.threads},
        "chosen_lam": lam,
        "chance_accuracy": 1.0 / N_CLASSES,
        "sweep": sweep,
        "summary": summary,
        "runs": per_seed,
        "seconds": elapsed,
        "machine": machine_info(),
    }
    write_atomically(args.out / "shuffled_digits.json", lambda f: json.dump(result, f, indent=1))
    return result


if __name__ == "__main__":
    main()
