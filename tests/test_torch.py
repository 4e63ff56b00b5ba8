"""wsprox.torch: the tensor adapter, autograd, penalty, the training hooks.

Runs in the tox env ``torch`` (which sets WSPROX_REQUIRE_TORCH=1 so that a missing torch
fails instead of skipping). CUDA tensor tests are marked ``gpu``.
"""

import itertools
import os

import numpy as np
import pytest

if os.environ.get("WSPROX_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch", reason="torch is not installed (the tox env 'torch' runs these tests)")

import wsprox
import wsprox.torch as wt

RNG = np.random.default_rng(4)


def randn(*shape, dtype=torch.float64, requires_grad=False):
    t = torch.from_numpy(RNG.standard_normal(shape)).to(dtype)
    return t.requires_grad_(requires_grad)


# --------------------------------------------------------------------------- adapter vs numpy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_matches_numpy_backend(dtype, dim):
    t = randn(20, 30, dtype=dtype)
    x, labels = wt.prox(t, 0.4, l1=0.05, dim=dim, return_clusters=True)
    xn, ln = wsprox.prox(t.numpy(), 0.4, l1=0.05, axis=dim, return_clusters=True)
    assert x.dtype == dtype and x.device == t.device and labels.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), xn)
    np.testing.assert_array_equal(labels.numpy(), ln)


def test_non_contiguous_input():
    base = randn(30, 40, dtype=torch.float32)
    for t in (base.t(), base[:, ::3], base.flip(0)[:, 5:]):
        for dim in (None, 0, 1):
            x = wt.prox(t, 0.3, dim=dim)
            np.testing.assert_array_equal(x.numpy(), wsprox.prox(t.contiguous().numpy(), 0.3, axis=dim))


def test_zero_dim_and_empty():
    x = wt.prox(torch.tensor(2.5), 1.0, l1=1.0)
    assert x.shape == () and float(x) == 1.5
    for shape in [(0,), (3, 0), (0, 4)]:
        for dim in (None, 0, 1) if len(shape) == 2 else (None, 0):
            x, labels = wt.prox(torch.empty(shape), 1.0, dim=dim, return_clusters=True)
            assert x.shape == shape and labels.shape == shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precisions_keep_dtype(dtype):
    t = randn(100, dtype=dtype)
    x = wt.prox(t, 0.5)
    assert x.dtype == dtype
    ref = wsprox.prox(t.float().numpy(), 0.5)
    np.testing.assert_allclose(x.float().numpy(), ref, rtol=1e-2, atol=1e-2)


def test_integer_tensor_gives_float64():
    x = wt.prox(torch.tensor([0, 1, 5]), 2.0)
    assert x.dtype == torch.float64
    assert x.tolist() == [1.5, 1.5, 3.0]


def test_requires_grad_leaf_is_untouched():
    t = randn(50, requires_grad=True)
    before = t.detach().clone()
    x = wt.prox(t, 0.5)
    assert x.requires_grad and x.grad_fn is not None
    assert torch.equal(t.detach(), before)
    with torch.no_grad():
        assert not wt.prox(t, 0.5).requires_grad


@pytest.mark.parametrize(("transposed", "dim"), [(True, None), (False, 0), (False, 1), (True, 0), (True, -1)], ids=str)
def test_cpu_zero_copy(monkeypatch, transposed, dim):
    """The backend reads the tensor's own memory; the result and labels wrap the backend's output arrays."""
    from wsprox import _registry

    t = randn(400, 300, dtype=torch.float32)
    t = t.t() if transposed else t  # non-contiguous, dense
    numba_backend = _registry.get_backend("numba")
    original = numba_backend.solve
    seen = {}

    def spy(rows, lam, l1, return_clusters):
        seen["input_shared"] = np.shares_memory(rows, t.numpy())
        out, labels = original(rows, lam, l1, return_clusters)
        seen["output"], seen["labels"] = out, labels
        return out, labels

    monkeypatch.setattr(numba_backend, "solve", spy)
    x, labels = wt.prox(t, 0.1, dim=dim, return_clusters=True)
    assert seen["input_shared"]
    assert np.shares_memory(x.numpy(), seen["output"])
    assert np.shares_memory(labels.numpy(), seen["labels"])
    assert x.untyped_storage().nbytes() == t.numel() * 4  # no larger buffer behind the view
    expected, expected_labels = wsprox.prox(t.numpy(), 0.1, axis=dim, backend="numba", return_clusters=True)
    np.testing.assert_array_equal(x.numpy(), expected)
    np.testing.assert_array_equal(labels.numpy(), expected_labels)


# --------------------------------------------------------------------------- autograd


@pytest.mark.parametrize("check", [torch.autograd.gradcheck, torch.autograd.gradgradcheck])
@pytest.mark.parametrize("dim", [None, 1])
@pytest.mark.parametrize("l1", [0.0, 0.2])
def test_gradcheck(check, dim, l1):
    """First derivatives, and (gradgradcheck) the backward's own derivative: double backward works."""
    t = randn(4, 9, requires_grad=True)
    assert check(lambda a: wt.prox(a, 0.6, l1=l1, dim=dim), (t,), eps=1e-7, atol=1e-6)


def test_vjp_against_finite_differences():
    t = randn(40, requires_grad=True)
    g = randn(40)
    x = wt.prox(t, 1.0, l1=0.1)
    (grad,) = torch.autograd.grad(x, t, g)
    eps = 1e-7
    jac = np.empty((40, 40))
    for j in range(40):
        e = torch.zeros(40, dtype=torch.float64)
        e[j] = eps
        jac[:, j] = ((wt.prox(t.detach() + e, 1.0, l1=0.1) - wt.prox(t.detach() - e, 1.0, l1=0.1)) / (2 * eps)).numpy()
    np.testing.assert_allclose(grad.numpy(), jac.T @ g.numpy(), atol=1e-6)
    _, labels = wt.prox(t.detach(), 1.0, l1=0.1, return_clusters=True)
    assert len(torch.unique(labels)) < 40  # clusters exist: the averaging is really exercised


def test_backward_averages_over_clusters():
    t = torch.tensor([0.0, 0.1, 5.0, 5.05, 9.0], dtype=torch.float64, requires_grad=True)
    x = wt.prox(t, 0.5)
    g = torch.tensor([1.0, 3.0, 2.0, 6.0, 7.0], dtype=torch.float64)
    x.backward(g)
    assert t.grad.tolist() == [2.0, 2.0, 4.0, 4.0, 7.0]


# --------------------------------------------------------------------------- penalty


def test_penalty_value_and_gradient():
    t = randn(6, 11, requires_grad=True)
    value = wt.penalty(t)
    assert value.shape == () and value.item() == pytest.approx(wsprox.penalty(t.detach().numpy()), rel=1e-12)
    value.backward()
    d = t.numel()
    ranks = np.argsort(np.argsort(t.detach().numpy().ravel()))
    np.testing.assert_allclose(t.grad.numpy().ravel(), (2 * ranks - d + 1) / (d - 1), atol=1e-12)
    rows = wt.penalty(t.detach(), dim=0)
    np.testing.assert_allclose(rows.numpy(), wsprox.penalty(t.detach().numpy(), axis=0), rtol=1e-12)
    assert wt.penalty(torch.ones(1)).item() == 0.0


def test_penalty_dtype_and_errors():
    assert wt.penalty(randn(10, dtype=torch.float32)).dtype == torch.float32
    with pytest.raises(TypeError, match="floating tensor"):
        wt.penalty(torch.arange(4))
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        wt.penalty(np.ones(3))


# --------------------------------------------------------------------------- errors


def test_errors():
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        wt.prox([1.0, 2.0], 1.0)
    with pytest.raises(TypeError, match="^t has unsupported dtype torch.complex64"):
        wt.prox(torch.ones(3, dtype=torch.complex64), 1.0)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        wt.prox(torch.ones(3), -1.0)
    for lam in ("1", torch.tensor([1.0, 2.0])):
        with pytest.raises(TypeError, match="^lam must be a real scalar"):
            wt.prox(torch.ones(3), lam)
    with pytest.raises(ValueError, match="^l1 must be >= 0"):
        wt.prox(torch.ones(3), 1.0, l1=-1.0)
    with pytest.raises(ValueError, match="^l1 must be finite"):
        wt.prox(torch.ones(3), 1.0, l1=float("nan"))
    with pytest.raises(ValueError, match="^unknown backend 'nope'"):
        wt.prox(torch.ones(3), 1.0, backend="nope")
    with pytest.raises(TypeError, match="^backend must be a str"):
        wt.prox(torch.ones(3), 1.0, backend=3)
    with pytest.raises(TypeError, match="^return_clusters must be a bool, got int"):
        wt.prox(torch.ones(3), 1.0, return_clusters=1)
    with pytest.raises(TypeError, match="^t has unsupported dtype"):
        wt.penalty(torch.ones(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="^t must be finite"):
        wt.penalty(torch.tensor([1.0, float("inf")]))
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        wt.prox(torch.ones(3, 2), 1.0, dim=2)
    with pytest.raises(TypeError, match="dim must be an int"):
        wt.prox(torch.ones(3, 2), 1.0, dim=1.0)
    bad = torch.ones(3, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"t must be finite: 1 non-finite value .* index \(1, 2\)"):
        wt.prox(bad, 1.0)


# --------------------------------------------------------------------------- training hooks


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()


def train_step(model, opt):
    torch.manual_seed(123)
    x = torch.randn(32, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize(
    "make_opt", [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.Adam(p)]
)
def test_hook_applies_prox_of_plain_step(make_opt):
    lam, l1 = 2.0, 0.01
    plain, hooked = make_model(), make_model()
    opt_plain, opt_hooked = make_opt(plain.parameters()), make_opt(hooked.parameters())
    ws = wt.WeightSharing(opt_hooked, [("w0", hooked[0].weight)], lam, l1=l1)
    for _ in range(3):
        train_step(plain, opt_plain)
        train_step(hooked, opt_hooked)
        lr = opt_hooked.param_groups[0]["lr"]
        # the hooked weight equals the prox of the plain step taken from the same point
        expected = wt.prox(plain[0].weight.detach(), lr * lam, l1=lr * l1)
        torch.testing.assert_close(hooked[0].weight.detach(), expected, rtol=0, atol=1e-12)
        with torch.no_grad():
            plain[0].weight.copy_(hooked[0].weight)
        torch.testing.assert_close(hooked[2].weight, plain[2].weight)  # unlisted params are untouched
    assert ws.steps == 3
    m = ws.metrics()["w0"]
    n_distinct = len(torch.unique(hooked[0].weight.detach()))
    assert m["distinct_ratio"] == pytest.approx(n_distinct / hooked[0].weight.numel())
    assert m["zero_ratio"] == pytest.approx(float((hooked[0].weight == 0).float().mean()))


def test_hook_follows_lr_scheduler_and_groups():
    model = make_model()
    opt = torch.optim.SGD(
        [{"params": [model[0].weight], "lr": 0.5}, {"params": [model[0].bias, model[2].weight, model[2].bias]}], lr=0.1
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    ws = wt.WeightSharing(opt, [model[0].weight, model[2].weight], 1.0, dim=1)
    for expected_lr in (0.5, 0.05):
        before = {k: p.detach().clone() for k, p in (("a", model[0].weight), ("b", model[2].weight))}
        torch.manual_seed(1)
        x = torch.randn(16, 8, dtype=torch.float64)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        grads = {"a": model[0].weight.grad.clone(), "b": model[2].weight.grad.clone()}
        opt.step()
        lr_a = opt.param_groups[0]["lr"]
        lr_b = opt.param_groups[1]["lr"]
        assert lr_a == pytest.approx(expected_lr)
        exp_a = wt.prox(before["a"] - lr_a * grads["a"], lr_a * 1.0, dim=1)
        exp_b = wt.prox(before["b"] - lr_b * grads["b"], lr_b * 1.0, dim=1)
        torch.testing.assert_close(model[0].weight.detach(), exp_a, rtol=0, atol=1e-12)
        torch.testing.assert_close(model[2].weight.detach(), exp_b, rtol=0, atol=1e-12)
        sched.step()
    assert set(ws.metrics()) == {"param0", "param1"}


def test_remove_and_state_dict():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ws = wt.WeightSharing(opt, [("w", model[0].weight)], 3.0, rho=0.25)
    train_step(model, opt)
    state = ws.state_dict()
    assert state == {"lam": 3.0, "l1": 0.0, "dim": None, "rho": 0.25, "steps": 1}
    ws.remove()
    before = model[0].weight.detach().clone()
    train_step(model, opt)
    plain = before - 0.1 * model[0].weight.grad
    torch.testing.assert_close(model[0].weight.detach(), plain)  # no prox any more
    other = wt.WeightSharing(opt, [("w", model[0].weight)], 1.0)
    other.load_state_dict(state)
    assert other.state_dict() == state
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({"lam": 1.0})
    other.remove()


def test_rho_damping_keeps_clusters_and_zeros():
    p = torch.nn.Parameter(randn(200))
    opt = torch.optim.SGD([p], lr=1.0)
    ws = wt.WeightSharing(opt, [p], 5.0, l1=0.3, rho=0.5)
    start = p.detach().clone()
    ws.apply()
    x, labels = wt.prox(start, 5.0, l1=0.3, return_clusters=True)
    mean = wt.cluster_mean(start, labels)
    expected = torch.where(x == 0, x, 0.5 * x + 0.5 * mean)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-12)
    for k in torch.unique(labels):
        assert len(torch.unique(p.detach()[labels == k])) == 1
    assert bool((p.detach()[x == 0] == 0).all())
    with pytest.raises(ValueError, match=r"rho must be in \[0, 1\)"):
        wt.WeightSharing(opt, [p], 1.0, rho=1.0)


def _groups_mean(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Every entry replaced by the float64 mean of the entries with its group key (a reference)."""
    out = np.empty(values.shape)
    for key in np.unique(groups):
        out[groups == key] = values[groups == key].mean()
    return out


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_cluster_mean_against_numpy_groups(dim):
    values = randn(6, 9, dtype=torch.float32)
    labels = torch.from_numpy(np.random.default_rng(3).integers(0, 4, size=(6, 9)))
    out = wt.cluster_mean(values, labels, dim=dim)
    assert out.dtype == torch.float32 and out.shape == values.shape
    lab = labels.numpy()
    if dim is not None:  # the groups of each slice along dim apart: key = label + 1000 * slice index
        lab = lab + 1000 * np.indices(lab.shape)[1 - dim]
    expected = _groups_mean(values.double().numpy(), lab)
    np.testing.assert_allclose(out.numpy(), expected, rtol=2e-7, atol=1e-7)  # float32 rounding of the float64 means
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        wt.cluster_mean(values, labels.double())
    with pytest.raises(ValueError, match="labels must be >= 0"):
        wt.cluster_mean(values, labels - 1)
    with pytest.raises(ValueError, match="labels has shape"):
        wt.cluster_mean(values, labels[:, :3])
    with pytest.raises(TypeError, match="values must be a torch.Tensor, got list"):
        wt.cluster_mean(values.tolist(), labels)
    with pytest.raises(TypeError, match="values must be a torch.Tensor, got ndarray"):
        wt.cluster_mean(values.numpy(), labels)
    with pytest.raises(TypeError, match="values has layout torch.sparse_coo"):
        wt.cluster_mean(values.to_sparse(), labels)
    for dtype in (torch.int64, torch.bool, torch.complex64):  # integer means would be truncated
        with pytest.raises(TypeError, match="values (must be a floating-point tensor|has unsupported dtype)"):
            wt.cluster_mean(values.to(dtype), labels)


@pytest.mark.parametrize("dim", [None, 1])
def test_ids_unique_across_the_tensor_also_work_with_dim(dim):
    """WeightSharing.clusters() ids (unique across the tensor) used with the dim they were learned with."""
    w = torch.nn.Parameter(randn(20, 30))
    opt = torch.optim.SGD([w], lr=1.0)
    ws = wt.WeightSharing(opt, [("w", w)], 0.05, dim=1)
    ws.apply()
    ids = ws.clusters()["w"]
    assert int(ids.max()) >= 30  # numbered across the rows, so larger than a row is long
    expected = ws.metrics()["w"]["distinct_ratio"]
    assert expected <= 1
    assert wt.sharing_metrics(w.detach(), ids, dim=dim)["distinct_ratio"] == expected
    values = randn(20, 30)
    torch.testing.assert_close(
        wt.cluster_mean(values, ids, dim=dim).numpy(), _groups_mean(values.numpy(), ids.numpy()), rtol=0, atol=1e-15
    )
    tied = wt.TiedWeights(opt, [("w", w, ids)], dim=dim)
    with torch.no_grad():
        w.add_(randn(20, 30))
    tied.apply()
    for k in torch.unique(ids):
        assert len(torch.unique(w.detach()[ids == k])) == 1
    tied.remove()
    ws.remove()


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.uint32, torch.uint64]
)
@pytest.mark.parametrize("dim", [None, 1])
def test_labels_of_every_integer_dtype(dtype, dim):
    values = randn(2, 128, dtype=torch.float32)
    per_row = torch.arange(128).repeat(2, 1)  # 0..127: the int8 maximum
    per_row[:, 64:] = per_row[:, 64:] // 8
    groups = per_row.numpy() + (0 if dim is None else 1000 * np.arange(2)[:, None])
    labels = per_row.to(dtype)
    expected = _groups_mean(values.double().numpy(), groups)
    np.testing.assert_allclose(wt.cluster_mean(values, labels, dim=dim).numpy(), expected, rtol=1e-7, atol=1e-7)
    n_groups = len(np.unique(groups))
    assert wt.sharing_metrics(values, labels, dim=dim)["distinct_ratio"] == n_groups / 256


def test_sparse_and_huge_ids_are_renumbered():
    values = randn(3, 5)
    labels = torch.tensor([[0, 1, 1, 2, 0], [3, 3, 3, 4, 4], [5, 6, 7, 8, 9]])
    huge = labels * 10**15 + 7  # two float64 buffers of this size would not fit in memory
    for dim in (None, 0, 1, -1):
        torch.testing.assert_close(
            wt.cluster_mean(values, huge, dim=dim), wt.cluster_mean(values, labels, dim=dim), rtol=0, atol=0
        )
        assert wt.sharing_metrics(values, huge, dim=dim) == wt.sharing_metrics(values, labels, dim=dim)
    with pytest.raises(ValueError, match=r"labels must be >= 0 \(and below 2\*\*63\)"):
        wt.cluster_mean(values[0, :2], torch.tensor([1, 2**63], dtype=torch.uint64))
    with pytest.raises(TypeError, match="dim must be an int or None, got str"):
        wt.cluster_mean(values, labels, dim="1")


def test_zero_dim_tensor_strengths():
    t = randn(40)
    expected = wt.prox(t, 0.5, l1=0.1)
    for lam in (torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float16), np.float32(0.5)):
        torch.testing.assert_close(wt.prox(t, lam, l1=torch.tensor(0.1)), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(wsprox.prox(t.numpy(), torch.tensor(0.5)), wsprox.prox(t.numpy(), 0.5))
    with pytest.raises(TypeError, match="lam is a tensor that requires grad; wsprox does not differentiate in lam"):
        wt.prox(t, torch.tensor(0.5, requires_grad=True))
    for bad, got in ((torch.tensor([0.5]), "Tensor"), (torch.tensor(True), "bool"), (torch.tensor(1j), "complex")):
        with pytest.raises(TypeError, match=f"lam must be a real scalar, got {got}"):
            wt.prox(t, bad)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        wt.prox(t, torch.tensor(-1.0))
    p = torch.nn.Parameter(t.clone())
    opt = torch.optim.SGD([p], lr=0.5)
    ws = wt.WeightSharing(opt, [p], torch.tensor(2.0))
    assert ws.lam == 2.0 and type(ws.lam) is float
    ws.apply()
    torch.testing.assert_close(p.detach(), wt.prox(t, 1.0), rtol=0, atol=0)


def test_negated_view_is_read_as_its_values():
    z = torch.complex(randn(50), randn(50))
    t = z.conj().imag  # a view with torch's negative bit set
    assert t.is_neg()
    plain = t.clone().resolve_neg()
    assert not plain.is_neg()
    x, labels = wt.prox(t, 0.5, return_clusters=True)
    expected, expected_labels = wsprox.prox(plain.numpy(), 0.5, return_clusters=True)
    np.testing.assert_array_equal(x.numpy(), expected)
    np.testing.assert_array_equal(labels.numpy(), expected_labels)
    by_column = wsprox.prox(plain.numpy().reshape(5, 10), 0.5, axis=0)
    np.testing.assert_array_equal(wt.prox(t.reshape(5, 10), 0.5, dim=0).numpy(), by_column)


def test_hook_leaves_parameters_without_grad_alone():
    """Frozen or unused parameters: the optimizer does not move them, nor does the hook."""
    model = make_model()
    frozen = model[0].weight
    frozen.requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ws = wt.WeightSharing(opt, [("frozen", frozen), ("live", model[2].weight)], 5.0)
    before = frozen.detach().clone()
    live_before = model[2].weight.detach().clone()
    train_step(model, opt)
    assert torch.equal(frozen.detach(), before)
    assert set(ws.metrics()) == set(ws.clusters()) == {"live"}
    plain_step = live_before - 0.1 * model[2].weight.grad
    torch.testing.assert_close(model[2].weight.detach(), wt.prox(plain_step, 0.5), rtol=0, atol=1e-12)
    assert ws.steps == 1
    ws.apply()  # called directly: every listed parameter
    torch.testing.assert_close(frozen.detach(), wt.prox(before, 0.5), rtol=0, atol=0)
    assert set(ws.metrics()) == {"frozen", "live"}
    ws.remove()


def test_learning_rate_checked_at_construction():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 4.0]))
    opt = torch.optim.SGD([p], lr=0.1)
    for bad, error, message in (
        (None, TypeError, "parameter 'p': its param group's lr must be a real number"),
        ("0.1", TypeError, "parameter 'p': its param group's lr must be a real number"),
        (float("nan"), ValueError, "parameter 'p': its param group's lr must be finite"),
    ):
        opt.param_groups[0]["lr"] = bad
        with pytest.raises(error, match=message):
            wt.WeightSharing(opt, [("p", p)], 1.0)
    del opt.param_groups[0]["lr"]
    with pytest.raises(TypeError, match="its param group's lr must be a real number .* got None"):
        wt.WeightSharing(opt, [("p", p)], 1.0)
    opt.param_groups[0]["lr"] = torch.tensor(0.5)  # a tensor lr, as capturable optimizers take
    ws = wt.WeightSharing(opt, [("p", p)], 1.0)
    opt.param_groups[0]["lr"] = None
    with pytest.raises(TypeError, match="parameter 'p': its param group's lr"):
        ws.apply()
    assert p.tolist() == [1.0, 2.0, 4.0] and ws.steps == 0
    opt.param_groups[0]["lr"] = torch.tensor(0.5, requires_grad=True)  # torch takes it; its value is used
    ws.apply()
    torch.testing.assert_close(p.detach(), wt.prox(torch.tensor([1.0, 2.0, 4.0]), 0.5), rtol=0, atol=0)


def test_tied_weights_names_a_parameter_whose_shape_changed():
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    b = torch.nn.Parameter(torch.tensor([4.0, 5.0, 6.0]))
    opt = torch.optim.SGD([a, b], lr=0.1)
    tied = wt.TiedWeights(opt, [("a", a, torch.tensor([0, 0, 1])), ("b", b, torch.tensor([0, 1, 1]))])
    assert a.tolist() == [1.5, 1.5, 3.0] and b.tolist() == [4.0, 5.5, 5.5]
    with torch.no_grad():
        a.data = torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match=r"parameter 'a' has shape \(2,\), its labels \(3,\)"):
        tied.apply()
    assert b.tolist() == [4.0, 5.5, 5.5]
    tied.remove()


def test_hook_errors():
    model = make_model()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not optimized by this optimizer"):
        wt.WeightSharing(opt, [model[2].weight], 1.0)
    with pytest.raises(TypeError, match="optimizer must be"):
        wt.WeightSharing(object(), [model[0].weight], 1.0)
    with pytest.raises(TypeError, match="not a single tensor"):
        wt.WeightSharing(opt, model[0].weight, 1.0)
    with pytest.raises(ValueError, match="params is empty"):
        wt.WeightSharing(opt, [], 1.0)
    with pytest.raises(ValueError, match="lam must be"):
        wt.WeightSharing(opt, [model[0].weight], -1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_failed_step_changes_nothing(bad):
    """A non-finite second parameter: the first is not written, clusters/metrics/steps stay."""
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    b = torch.nn.Parameter(torch.tensor([0.5, -0.5]))
    opt = torch.optim.SGD([a, b], lr=1.0)
    ws = wt.WeightSharing(opt, [("a", a), ("b", b)], 1.0)
    ws.apply()
    state = (a.detach().clone(), ws.clusters(), ws.metrics(), ws.steps)
    with torch.no_grad():
        a.copy_(torch.tensor([4.0, 1.0, 2.0]))
        b[1] = bad
    before_a, before_b = a.detach().clone(), b.detach().clone()
    with pytest.raises(ValueError, match="parameter 'b': t must be finite"):
        ws.apply()
    assert torch.equal(a.detach(), before_a)  # the prox of a was computed but not written
    torch.testing.assert_close(b.detach(), before_b, equal_nan=True, rtol=0, atol=0)
    assert ws.steps == state[3] == 1
    assert ws.metrics() == state[2]
    assert ws.clusters().keys() == state[1].keys() == {"a", "b"}
    for name in ("a", "b"):
        assert torch.equal(ws.clusters()[name], state[1][name])
    ws.remove()


def test_tied_weights_retraining():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ws = wt.WeightSharing(opt, [("w", model[0].weight)], 20.0)
    train_step(model, opt)
    clusters = ws.clusters()["w"]
    ws.remove()
    n_clusters = len(torch.unique(clusters))
    assert n_clusters < model[0].weight.numel()
    opt2 = torch.optim.Adam(model.parameters(), lr=0.01)
    tie = wt.TiedWeights(opt2, [("w", model[0].weight, clusters)])
    for _ in range(3):
        train_step(model, opt2)
        w = model[0].weight.detach()
        for k in torch.unique(clusters):
            assert len(torch.unique(w[clusters == k])) == 1
    assert len(torch.unique(model[0].weight.detach())) <= n_clusters
    tie.remove()
    with pytest.raises(TypeError, match="parameter 'w': labels must be an integer tensor, got torch.float64"):
        wt.TiedWeights(opt2, [("w", model[0].weight, clusters.double())])


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (torch.tensor([0, -1]), ValueError, "parameter 'b': labels must be >= 0"),
        (torch.tensor([True, False]), TypeError, "parameter 'b': labels must be an integer tensor, got torch.bool"),
        (torch.tensor([0, 1, 2]), ValueError, r"parameter 'b': labels has shape \(3,\), expected \(2,\)"),
    ],
    ids=["negative", "bool", "shape"],
)
def test_tied_weights_checks_every_item_before_writing(bad, error, message):
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    b = torch.nn.Parameter(torch.tensor([4.0, 5.0]))
    opt = torch.optim.SGD([a, b], lr=0.1)
    with pytest.raises(error, match=message):
        wt.TiedWeights(opt, [("a", a, torch.tensor([0, 0, 1])), ("b", b, bad)])
    assert a.tolist() == [1.0, 2.0, 3.0] and b.tolist() == [4.0, 5.0]  # nothing projected
    a.grad, b.grad = torch.zeros(3), torch.zeros(2)
    opt.step()
    assert a.tolist() == [1.0, 2.0, 3.0] and b.tolist() == [4.0, 5.0]  # no hook left registered


def test_weight_sharing_checks_the_backend_at_construction():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 4.0]))
    opt = torch.optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        wt.WeightSharing(opt, [("p", p)], 1.0, backend="nope")
    with pytest.raises(TypeError, match="backend must be a str, got int"):
        wt.WeightSharing(opt, [("p", p)], 1.0, backend=3)
    if not wsprox.backends()["cuda"].available:
        with pytest.raises(ValueError, match="backend 'cuda' is not available here"):
            wt.WeightSharing(opt, [("p", p)], 1.0, backend="cuda")
    else:
        with pytest.raises(ValueError, match="parameter 'p': backend 'cuda' does not take cpu tensors"):
            wt.WeightSharing(opt, [("p", p)], 1.0, backend="cuda")
    p.grad = torch.zeros(3)
    opt.step()
    assert p.tolist() == [1.0, 2.0, 4.0]  # no hook left registered
    ws = wt.WeightSharing(opt, [("p", p)], 1.0, backend="numba")
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), wsprox.prox(np.array([1.0, 2.0, 4.0], np.float32), 0.1))
    ws.remove()


def test_sharing_metrics():
    x = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 3.0, 3.0, 0.0]])
    _, labels = wt.prox(x, 0.0, dim=1, return_clusters=True)
    m = wt.sharing_metrics(x, labels, dim=1)
    assert m == {"distinct_ratio": 5 / 8, "zero_ratio": 3 / 8}
    assert wt.sharing_metrics(x, labels) == {"distinct_ratio": 3 / 8, "zero_ratio": 3 / 8}
    assert wt.sharing_metrics(x[:0], labels[:0], dim=1) == {"distinct_ratio": 0.0, "zero_ratio": 0.0}
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        wt.sharing_metrics(x, labels.double(), dim=1)
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        wt.sharing_metrics(x, labels.numpy(), dim=1)
    with pytest.raises(ValueError, match="labels must be >= 0"):
        wt.sharing_metrics(x, labels - 1, dim=1)
    with pytest.raises(ValueError, match="labels has shape"):
        wt.sharing_metrics(x, labels[:, :2], dim=1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        wt.sharing_metrics(x.numpy(), labels, dim=1)


# --------------------------------------------------------------------------- CUDA tensors


@pytest.mark.gpu
def test_cuda_tensor_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    t = randn(1000, 300, dtype=torch.float32)
    x_gpu, labels_gpu = wt.prox(t.cuda(), 0.3, dim=1, return_clusters=True)
    assert x_gpu.is_cuda and labels_gpu.is_cuda
    x, labels = wt.prox(t, 0.3, dim=1, return_clusters=True)
    torch.testing.assert_close(x_gpu.cpu(), x, rtol=0, atol=2e-6)
    tg = t.cuda().double().requires_grad_(True)
    wt.prox(tg, 0.3).sum().backward()
    assert tg.grad.is_cuda


def test_bfloat16_labels_are_groups_of_equal_value():
    t = torch.tensor([1.015625, 1.0234375, 1.0390625, 1.0, 1.0078125], dtype=torch.bfloat16)
    x, labels = wt.prox(t, 0.01268, return_clusters=True)
    values = x.float().numpy()
    np.testing.assert_array_equal(labels.numpy(), np.unique(values, return_inverse=True)[1])


def test_expanded_tensor_matches_copy():
    t = torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64).expand(2, 3)
    torch.testing.assert_close(wt.prox(t, 1.0), wt.prox(t.contiguous(), 1.0), rtol=0, atol=0)


def test_clusters_with_dim_tie_only_within_rows():
    q = torch.nn.Parameter(torch.tensor([[0.0, 1.0], [10.0, 11.0]], dtype=torch.float64))
    opt = torch.optim.SGD([q], lr=1.0)
    ws = wt.WeightSharing(opt, [("q", q)], 5.0, dim=1)
    ws.apply()
    clusters = ws.clusters()["q"]
    assert clusters.tolist() == [[0, 0], [1, 1]]  # each row pooled on its own; ids unique across rows
    wt.TiedWeights(opt, [("q", q, clusters)])
    assert q.detach().tolist() == [[0.5, 0.5], [10.5, 10.5]]
    with pytest.raises(IndexError, match="dim 5 is out of range"):
        ws.load_state_dict({**ws.state_dict(), "dim": 5})
    with pytest.raises(IndexError, match="out of range"):
        wt.TiedWeights(opt, [("q", q, clusters)], dim=3)


# --------------------------------------------------------------------------- torch.compile, higher order, torch.func

COMPILE_SCRIPT = """
import torch, wsprox.torch as wt

def f(t):
    return (wt.prox(t * 2, 0.5, l1=0.1) ** 2).sum() + wt.penalty(t)

t = torch.linspace(-1, 1, 40, dtype=torch.float64).sin().requires_grad_(True)
compiled = torch.compile(f, backend="eager")
a = compiled(t)
(ga,) = torch.autograd.grad(a, t)
b = f(t)
(gb,) = torch.autograd.grad(b, t)
assert a.item() == b.item(), (a, b)
assert torch.equal(ga, gb)
with torch.no_grad():
    assert torch.equal(compiled(t), f(t))
print("ok")
"""


def test_torch_compile_in_fresh_process(tmp_path):
    """Dynamo must not trace into numba's first-call dispatch (it did, and crashed)."""
    import pathlib
    import subprocess
    import sys

    # the wsprox this process tests, whether installed or checked out (the empty cwd adds nothing)
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(wsprox.__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_hessian_vector_product_is_jt_j():
    t = randn(30, requires_grad=True)
    v = randn(30)
    loss = (wt.prox(t, 1.5, l1=0.2) ** 2).sum()
    (g,) = torch.autograd.grad(loss, t, create_graph=True)
    (hv,) = torch.autograd.grad(g, t, v)
    x, labels = wt.prox(t.detach(), 1.5, l1=0.2, return_clusters=True)
    same = (labels[:, None] == labels[None, :]).double()
    jac = same / same.sum(1, keepdim=True) * (x != 0).double()[:, None]  # dx_i/dt_j
    assert 1 < len(torch.unique(labels)) < 30 and bool((x == 0).any())  # both the averaging and the mask
    torch.testing.assert_close(hv, 2 * jac.T @ jac @ v, rtol=0, atol=1e-12)
    assert float(hv.abs().max()) > 0.1
    # the prox itself is piecewise linear: its second derivative is zero
    x = wt.prox(t, 1.5, l1=0.2)
    w = v.clone().requires_grad_(True)
    (vjp,) = torch.autograd.grad(x, t, w, create_graph=True)
    second, d_w = torch.autograd.grad((vjp * v).sum(), (t, w), allow_unused=True, materialize_grads=True)
    assert float(second.abs().max()) == 0.0
    torch.testing.assert_close(d_w, jac @ v, rtol=0, atol=1e-12)  # the VJP is linear in the incoming gradient


def test_torch_func_grad_jvp_and_forward_ad():
    from torch.func import grad, hessian, jacfwd, jacrev, jvp

    t = randn(12)
    u = randn(12)

    def loss(a):
        return (wt.prox(a, 1.0, l1=0.1) ** 2).sum()

    tg = t.clone().requires_grad_(True)
    loss(tg).backward()
    torch.testing.assert_close(grad(loss)(t), tg.grad, rtol=0, atol=0)
    jr = jacrev(lambda a: wt.prox(a, 1.0, l1=0.1))(t)
    jf = jacfwd(lambda a: wt.prox(a, 1.0, l1=0.1))(t)
    torch.testing.assert_close(jf, jr, rtol=0, atol=1e-15)
    torch.testing.assert_close(jf, jf.T, rtol=0, atol=0)  # the Jacobian is symmetric
    x, x_dot = jvp(lambda a: wt.prox(a, 1.0, l1=0.1), (t,), (u,))
    torch.testing.assert_close(x, wt.prox(t, 1.0, l1=0.1), rtol=0, atol=0)
    torch.testing.assert_close(x_dot, jr @ u, rtol=0, atol=1e-14)
    torch.testing.assert_close(hessian(loss)(t), 2 * jr.T @ jr, rtol=0, atol=1e-14)
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        dual = wt.prox(fwad.make_dual(t, u), 1.0, l1=0.1)
        torch.testing.assert_close(fwad.unpack_dual(dual).tangent, x_dot, rtol=0, atol=0)


@pytest.mark.parametrize(
    "layout, dim",
    [("transposed", None), ("channels_last", None), ("transposed", 0), ("channels_last", 1)],
)
def test_forward_ad_on_permuted_layouts(layout, dim):
    """Forward mode on inputs solved in memory order or along a moved axis (outputs sharing the backend's memory)."""
    import torch.autograd.forward_ad as fwad

    if layout == "transposed":
        t = randn(7, 5).T
    else:
        t = randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    u = torch.randn(t.shape, dtype=t.dtype, generator=torch.Generator().manual_seed(3))
    jac = torch.autograd.functional.jacobian(lambda a: wt.prox(a, 0.8, l1=0.05, dim=dim), t)
    jac = jac.reshape(t.numel(), t.numel())
    with fwad.dual_level():
        primal, tangent = fwad.unpack_dual(wt.prox(fwad.make_dual(t, u), 0.8, l1=0.05, dim=dim))
    torch.testing.assert_close(primal, wt.prox(t, 0.8, l1=0.05, dim=dim), rtol=0, atol=0)
    torch.testing.assert_close(tangent.reshape(-1), jac @ u.reshape(-1), rtol=0, atol=1e-14)
    assert float(tangent.abs().max()) > 0.01
    forward = torch.autograd.functional.jacobian(
        lambda a: wt.prox(a, 0.8, l1=0.05, dim=dim), t, vectorize=True, strategy="forward-mode"
    )
    torch.testing.assert_close(forward.reshape(t.numel(), t.numel()), jac, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_torch_func_vmap_matches_dim(dtype):
    from torch.func import grad, vmap

    batch = randn(5, 4, 6, dtype=dtype)
    x, labels = vmap(lambda a: wt.prox(a, 0.7, return_clusters=True))(batch)
    for k in range(5):  # dim=None per sample: one problem over the whole sample
        xk, lk = wt.prox(batch[k], 0.7, return_clusters=True)
        torch.testing.assert_close(x[k], xk, rtol=0, atol=0)
        assert torch.equal(labels[k], lk)
    per_row = vmap(lambda a: wt.prox(a, 0.7, dim=1), in_dims=2, out_dims=2)(batch.permute(1, 2, 0))
    torch.testing.assert_close(per_row, wt.prox(batch.permute(1, 2, 0), 0.7, dim=1), rtol=0, atol=0)

    def loss(a):
        return (wt.prox(a, 0.7, l1=0.05) ** 3).sum()

    per_sample = vmap(grad(loss))(batch)
    for k in range(5):
        torch.testing.assert_close(per_sample[k], grad(loss)(batch[k]), rtol=0, atol=0)
    bad = batch.clone()
    bad[2, 1, 3] = float("inf")
    with pytest.raises(ValueError, match="must be finite"):
        vmap(lambda a: wt.prox(a, 0.7))(bad)


def test_torch_func_penalty_vmap_and_grad():
    from torch.func import grad, vmap

    batch = randn(4, 3, 7, dtype=torch.float64)
    per_sample = vmap(wt.penalty)(batch)
    torch.testing.assert_close(per_sample, wt.penalty(batch.reshape(4, -1), dim=1), rtol=0, atol=0)
    per_row = vmap(lambda a: wt.penalty(a, dim=1), in_dims=1)(batch)  # (3, 4): R of every batch[i, k, :]
    torch.testing.assert_close(per_row, wt.penalty(batch, dim=2).T, rtol=0, atol=0)
    grads = vmap(grad(wt.penalty))(batch)
    for k in range(4):
        flat = batch[k].reshape(-1)
        ranks = torch.argsort(torch.argsort(flat)).to(torch.float64)
        expected = (2 * ranks - (flat.numel() - 1)) / (flat.numel() - 1)
        torch.testing.assert_close(grads[k].reshape(-1), expected, rtol=0, atol=1e-15)
    bad = batch.clone()
    bad[3, 2, 6] = float("nan")
    with pytest.raises(ValueError, match=r"must be finite.*\(3, 2, 6\)"):
        vmap(wt.penalty)(bad)


# --------------------------------------------------------------------------- gradient: lam = 0, half precisions


@pytest.mark.parametrize("l1", [0.0, 0.5])
def test_lam_zero_gradient_is_identity_with_ties(l1):
    t = torch.tensor([1.0, 1.0, 2.0, 0.25, 0.25], dtype=torch.float64, requires_grad=True)
    x = wt.prox(t, 0.0, l1=l1)
    g = torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0], dtype=torch.float64)
    x.backward(g)
    expected = g * (x.detach() != 0)
    assert t.grad.tolist() == expected.tolist()
    assert t.grad.tolist() == ([1.0, 3.0, 5.0, 7.0, 9.0] if l1 == 0 else [1.0, 3.0, 5.0, 0.0, 0.0])


@pytest.mark.parametrize("dtype, ulp", [(torch.float16, 2.0**-10), (torch.bfloat16, 2.0**-7)])
def test_half_precision_gradient_uses_the_float32_blocks(dtype, ulp):
    # velocities (lam, 0, -lam): in float32 the outputs 3/4 ulp, 1 and 1 + ulp/4 are three blocks;
    # cast back, the last two are both 1, one group of equal value, but not one block
    t = torch.tensor([0.0, 1.0, 1.0 + ulp], dtype=dtype, requires_grad=True)
    lam = 0.75 * ulp
    x, labels = wt.prox(t, lam, return_clusters=True)
    assert x.dtype == dtype and x.tolist() == [0.75 * ulp, 1.0, 1.0]
    assert labels.tolist() == [0, 1, 1]  # the returned labels: groups of equal value after the cast
    _, blocks = wt.prox(t.detach().float(), lam, return_clusters=True)
    assert blocks.tolist() == [0, 1, 2]
    x.backward(torch.tensor([2.0, 1.0, 3.0], dtype=dtype))
    assert t.grad.dtype == dtype and t.grad.tolist() == [2.0, 1.0, 3.0]  # not averaged to 2, 2


@pytest.mark.parametrize("l1", [0.0, 0.1])
def test_output_may_be_modified_in_place_before_backward(l1):
    t = randn(20, requires_grad=True)
    g = randn(20)
    (expected,) = torch.autograd.grad(wt.prox(t, 1.0, l1=l1), t, g)
    x = wt.prox(t, 1.0, l1=l1)
    x.add_(1)
    x.backward(g)
    torch.testing.assert_close(t.grad, expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- layouts, devices, finite check


def test_meta_and_sparse_tensors_are_refused():
    meta = torch.ones(3, device="meta")
    sparse = torch.ones(3).to_sparse()
    for fn in (lambda a: wt.prox(a, 1.0), wt.penalty):
        with pytest.raises(ValueError, match="t is on device meta; wsprox supports CPU and CUDA tensors"):
            fn(meta)
        with pytest.raises(TypeError, match=r"t has layout torch.sparse_coo; .*strided"):
            fn(sparse)
    with pytest.raises(TypeError, match="t has layout torch.sparse_csr"):
        wt.prox(torch.eye(3).to_sparse_csr(), 1.0)


def test_finite_check_syncs_once(monkeypatch):
    calls = []
    for name in ("item", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, _f=original, _n=name: (calls.append(_n), _f(self))[1], raising=False
        )
    wt._check_finite(randn(100))
    assert len(calls) == 1


# --------------------------------------------------------------------------- hooks: duplicates, state


def test_duplicate_parameters_are_refused():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = model[0].weight
    with pytest.raises(ValueError, match="same tensor twice, as 'a' and 'b'"):
        wt.WeightSharing(opt, [("a", w), ("b", w)], 1.0)
    with pytest.raises(ValueError, match="same tensor twice, as 'param0' and 'param2'"):
        wt.WeightSharing(opt, [w, model[2].weight, w], 1.0)
    with pytest.raises(ValueError, match="same tensor twice, as 'a' and 'b'"):
        wt.WeightSharing(opt, [("a", w), ("b", w.data)], 1.0)
    labels = torch.zeros(w.shape, dtype=torch.int64)
    with pytest.raises(ValueError, match="same tensor twice, as 'a' and 'b'"):
        wt.TiedWeights(opt, [("a", w, labels), ("b", w, labels)])
    with pytest.raises(ValueError, match="same tensor twice, as 'param0' and 'param1'"):
        wt.TiedWeights(opt, [(w, labels), (w, labels)])
    with pytest.raises(ValueError, match="params is empty"):
        wt.TiedWeights(opt, [])
    with pytest.raises(ValueError, match="params has duplicate names"):
        w2 = model[2].weight
        wt.TiedWeights(opt, [("a", w, labels), ("a", w2, torch.zeros(w2.shape, dtype=torch.int64))])
    # empty tensors share no elements
    e1, e2 = torch.nn.Parameter(torch.empty(0)), torch.nn.Parameter(torch.empty(0))
    wt.WeightSharing(torch.optim.SGD([e1, e2], lr=0.1), [e1, e2], 1.0).remove()


def _elements_of(view: torch.Tensor) -> set[int]:
    """Storage offsets of the elements of ``view``, by brute force over its multi-indices."""
    return {
        view.storage_offset() + sum(i * st for i, st in zip(index, view.stride()))
        for index in itertools.product(*map(range, view.shape))
    }


def test_overlapping_views_are_refused_and_disjoint_ones_kept():
    base = torch.arange(60.0).reshape(3, 4, 5)
    flat = base.reshape(-1)
    views = {
        "row": base[0],
        "column": base[:, 0],
        "even": base[:, :, ::2],
        "odd": base[:, :, 1::2],
        "transposed": base.transpose(0, 2),
        "corner": base[2, 1:, 3:],
        "stride3": base[:, 1, ::3],
        "step4": flat[7:31:4],
        "step4b": flat[8:31:4],
    }
    outcomes = set()
    for (na, a), (nb, b) in itertools.combinations(views.items(), 2):
        shared = bool(_elements_of(a) & _elements_of(b))
        outcomes.add(shared)
        pa, pb = torch.nn.Parameter(a), torch.nn.Parameter(b)
        opt = torch.optim.SGD([pa, pb], lr=0.1)
        if shared:
            with pytest.raises(ValueError, match=f"params '{na}' and '{nb}' share elements"):
                wt.WeightSharing(opt, [(na, pa), (nb, pb)], 1.0)
            with pytest.raises(ValueError, match="share elements"):
                zeros = [torch.zeros(v.shape, dtype=torch.int64) for v in (a, b)]
                wt.TiedWeights(opt, [(na, pa, zeros[0]), (nb, pb, zeros[1])])
        else:
            wt.WeightSharing(opt, [(na, pa), (nb, pb)], 1.0).remove()
    assert outcomes == {True, False}
    # a row of a listed matrix: before, both updates wrote the row, the row's last
    matrix = torch.tensor([[0.0, 1, 2, 3], [10, 11, 12, 13]])
    whole, row = torch.nn.Parameter(matrix), torch.nn.Parameter(matrix[0])
    with pytest.raises(ValueError, match="params 'param0' and 'param1' share elements"):
        wt.WeightSharing(torch.optim.SGD([whole, row], lr=1.0), [whole, row], 3.0)
    assert torch.equal(matrix, torch.tensor([[0.0, 1, 2, 3], [10, 11, 12, 13]]))


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ({"rho": 1.5}, ValueError, r"rho must be in \[0, 1\)"),
        ({"l1": -1.0}, ValueError, "l1 must be"),
        ({"dim": 7}, IndexError, "dim"),
        ({"steps": -1}, ValueError, "steps must be >= 0"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"steps": True}, TypeError, "steps must be an int"),
        ({"steps": "3"}, TypeError, "steps must be an int"),
    ],
)
def test_failed_load_state_dict_changes_nothing(bad, error, match):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ws = wt.WeightSharing(opt, [("w", model[0].weight)], 3.0, rho=0.25)
    ws.apply()
    before = ws.state_dict()
    with pytest.raises(error, match=match):
        ws.load_state_dict({"lam": 9.0, "l1": 0.5, "dim": 1, "rho": 0.5, "steps": 4, **bad})
    assert ws.state_dict() == before
    ws.load_state_dict({"lam": 9.0, "l1": 0.5, "dim": 1, "rho": 0.5, "steps": np.int64(4)})
    assert ws.state_dict() == {"lam": 9.0, "l1": 0.5, "dim": 1, "rho": 0.5, "steps": 4}
    ws.remove()
