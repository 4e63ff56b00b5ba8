"""wsprox for PyTorch: the prox on tensors with autograd, and hooks for training.

- :func:`prox` / :func:`penalty`: :func:`wsprox.prox` and :func:`wsprox.penalty` for
  tensors, differentiable.
- :class:`WeightSharing`: after every ``optimizer.step()``, replaces parameters (those with
  a gradient at that step) by their prox with the step's learning rate (proximal gradient
  descent), as in the paper.
- :class:`TiedWeights`: retraining with frozen weight-sharing groups (projection onto
  the tying pattern after every step).
- :func:`sharing_metrics`: the paper's distinct-weight and zero ratios.

CPU tensors are handed to the numba backend as numpy views (no copy; non-contiguous
tensors are fine) and the result wraps the backend's output array (no copy). CUDA tensors
go to the ``cuda`` backend zero-copy, on the current stream. Only dense (strided) CPU and
CUDA tensors are accepted. Supports torch >= 2.1 (the ``torch`` extra's floor) and is
tested with torch 2.13 (CPU build). Importing :mod:`wsprox` never imports torch; importing
:mod:`wsprox.torch` does.

:func:`prox` works inside ``torch.compile`` (the backend call runs eagerly, a graph
break), supports double backward, forward-mode AD and the :mod:`torch.func` transforms
``grad``, ``vjp``, ``jvp``, ``vmap`` and their compositions (``jacrev``, ``hessian``, ...).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import torch

from . import _api
from ._validation import check_strength, nonfinite_message

__all__ = ["prox", "penalty", "WeightSharing", "TiedWeights", "sharing_metrics", "cluster_mean"]

_UNSUPPORTED = tuple(
    getattr(torch, name)
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
    if hasattr(torch, name)
)


# --------------------------------------------------------------------------- validation


def _check_tensor(t, name="t") -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} has layout {t.layout}; wsprox supports dense (torch.strided) tensors")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} is on device {t.device}; wsprox supports CPU and CUDA tensors")
    if t.is_complex() or t.dtype in _UNSUPPORTED:
        raise TypeError(f"{name} has unsupported dtype {t.dtype}; expected a real floating, integer or bool dtype")


def _normalize_dim(dim, ndim) -> int | None:
    if dim is None:
        return None
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int or None, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1) or ndim == 0:
        raise IndexError(f"dim {dim} is out of range for a tensor of dimension {ndim}")
    return int(dim) % ndim


def _opaque(fn):
    """``fn``, run eagerly under ``torch.compile`` (numpy/numba calls and host syncs are not traced).

    Outside compilation ``fn`` is called directly: no import of ``torch._dynamo`` (about a
    second) and no per-call cost. While dynamo traces, the call goes through
    ``torch.compiler.disable`` (a graph break). Torch versions without
    ``torch.compiler.is_compiling`` get ``torch.compiler.disable(fn)`` itself.
    """
    compiler = getattr(torch, "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None)
    if is_compiling is None:
        disable = getattr(compiler, "disable", None)
        return fn if disable is None else disable(fn)

    @functools.wraps(fn)
    def call(*args):
        if not is_compiling():
            return fn(*args)
        return torch.compiler.disable(fn)(*args)

    return call


def _check_finite(t, name="t") -> None:
    """ValueError if ``t`` holds NaN or infinity (one host sync).

    Under a :mod:`torch.func` transform the check runs on the underlying plain tensor
    (for vmap: all samples, index reported in the batched shape), since a transformed
    tensor cannot be read on the host.
    """
    data = _unwrapped(t.detach())
    if data.is_floating_point() and data.numel():
        low, high = torch.aminmax(data)  # NaN propagates; no d-sized temporary
        if not torch.isfinite(torch.stack((low, high))).all().item():  # one host sync
            bad = ~torch.isfinite(data)
            first = np.unravel_index(int(bad.reshape(-1).nonzero()[0, 0]), tuple(data.shape))
            raise ValueError(nonfinite_message(name, int(bad.sum()), first))


_check_finite_opaque = _opaque(_check_finite)  # for penalty; prox checks inside its opaque part

_HALF = (torch.float16, torch.bfloat16)


def _is_transformed(t: torch.Tensor) -> bool:
    """True for a tensor wrapped by a :mod:`torch.func` transform (vmap, grad, jvp)."""
    functorch = getattr(torch._C, "_functorch", None)
    check = getattr(functorch, "is_functorch_wrapped_tensor", None)
    return bool(check is not None and check(t))


def _unwrapped(t: torch.Tensor) -> torch.Tensor:
    """The plain tensor under all :mod:`torch.func` wrappers of ``t`` (``t`` itself if none)."""
    functorch = getattr(torch._C, "_functorch", None)
    get = getattr(functorch, "get_unwrapped", None)
    while get is not None and _is_transformed(t):
        t = get(t)
    return t


def _has_tangent(t: torch.Tensor) -> bool:
    """True for a dual tensor of :mod:`torch.autograd.forward_ad`."""
    return torch.autograd.forward_ad.unpack_dual(t).tangent is not None


# --------------------------------------------------------------------------- forward


def _forward(t: torch.Tensor, lam: float, l1: float, dim, backend: str, want_blocks: bool, want_mask: bool):
    """Prox, blocks and nonzero mask of a validated tensor, on ``t``'s device.

    Returns ``(x, blocks, mask)``. ``blocks`` (if wanted, else None) are the cluster ids
    of the computation before any cast to a half precision; ``mask`` (if wanted, else
    None) is ``x != 0`` of that computation. CPU tensors are passed to :func:`wsprox.prox`
    as numpy views and the result wraps the returned array; CUDA tensors are passed as
    they are (zero-copy, current stream). float16 and bfloat16 are computed in float32
    (a float32 copy; numpy and the kernels have no bfloat16, and the backends compute
    float16 in float32 too) and the result is cast back. With ``dim=None`` a dense but
    permuted tensor (e.g. a transposed weight) is handed over in memory order, a
    permutation the whole-tensor prox commutes with, so no copy is made. With an int
    ``dim`` the problems are solved along the last axis of ``t.movedim(dim, -1)`` and the
    results moved back: views of the backend's arrays, not C-contiguous copies.
    """
    _check_finite(t)
    src = t.detach().resolve_neg()  # a negated view (e.g. ``z.conj().imag``) has no numpy or CUDA array view
    if src.dtype in _HALF:
        src = src.float()
    order = None
    if dim is None and src.dim() > 1 and not src.is_contiguous():
        order = sorted(range(src.dim()), key=lambda a: -src.stride(a))
        if src.permute(order).is_contiguous():
            src = src.permute(order)
        else:
            order = None
    moved = dim is not None and dim != src.dim() - 1
    if moved:  # solved along the last axis and moved back: a view of the backend's output, not a copy
        src = src.movedim(dim, -1)
    result = _api.prox(
        src.numpy() if t.device.type == "cpu" else src,
        lam,
        l1=l1,
        axis=None if dim is None else -1,
        backend=backend,
        return_clusters=want_blocks,
    )
    x, blocks = result if want_blocks else (result, None)
    x = torch.as_tensor(x, device=t.device)
    if blocks is not None:
        blocks = torch.as_tensor(blocks, device=t.device)
    if moved:
        x = x.movedim(-1, dim)
        blocks = None if blocks is None else blocks.movedim(-1, dim)
    if order is not None:
        inverse = [order.index(a) for a in range(len(order))]
        x = x.permute(inverse)
        blocks = None if blocks is None else blocks.permute(inverse)
    if moved or order is not None:
        x = _own_tensor(x)
        blocks = None if blocks is None else _own_tensor(blocks)
    mask = (x != 0) if want_mask else None
    if t.dtype in _HALF:
        x = x.to(t.dtype)
    return x, blocks, mask


def _own_tensor(view: torch.Tensor) -> torch.Tensor:
    """A tensor with ``view``'s storage, offset, shape and strides that is not a view in autograd's sense.

    Forward-mode AD trips an internal assertion of torch (2.13) when a custom Function
    returns a view of a tensor made inside its ``forward`` (seen for permuted outputs).
    No copy is made.
    """
    own = view.new_empty(0)
    return own.set_(view.untyped_storage(), view.storage_offset(), view.shape, view.stride())


def _labels_from_values(x: torch.Tensor, dim) -> torch.Tensor:
    """Per problem, the distinct values of ``x`` numbered ``0..K-1`` in increasing order."""
    rows = x.reshape(1, -1) if dim is None else x.movedim(dim, -1).reshape(-1, x.shape[dim])
    if rows.numel() == 0:
        return torch.zeros(x.shape, dtype=torch.int64, device=x.device)
    values, order = torch.sort(rows, dim=1, stable=True)
    # out-of-place ops only, so that this also runs under torch.func.vmap
    starts = torch.cat((torch.zeros_like(order[:, :1]), (values[:, 1:] != values[:, :-1]).to(torch.int64)), dim=1)
    labels = torch.zeros_like(order).scatter(1, order, torch.cumsum(starts, dim=1))
    return _unmove(labels.reshape(-1), x, dim)


def _global_ids(labels: torch.Tensor, dim) -> tuple[torch.Tensor, int]:
    """Cluster ids made unique across problems (flattened in ``labels``' moved layout) and their count."""
    if dim is None:
        flat = labels.reshape(-1)
        return flat, (int(flat.max()) + 1 if flat.numel() else 0)
    rows = labels.movedim(dim, -1).reshape(-1, labels.shape[dim])
    if rows.numel() == 0:
        return rows.reshape(-1), 0
    counts = rows.max(dim=1).values + 1
    offsets = torch.cumsum(counts, 0) - counts
    return (rows + offsets[:, None]).reshape(-1), int(counts.sum())


def _moved_flat(t: torch.Tensor, dim) -> torch.Tensor:
    return t.reshape(-1) if dim is None else t.movedim(dim, -1).reshape(-1)


def _unmove(flat: torch.Tensor, like: torch.Tensor, dim) -> torch.Tensor:
    if dim is None:
        return flat.reshape(like.shape)
    moved_shape = like.movedim(dim, -1).shape
    return flat.reshape(moved_shape).movedim(-1, dim)


def cluster_mean(values: torch.Tensor, labels: torch.Tensor, *, dim=None) -> torch.Tensor:
    r"""Replace every entry by the mean of its cluster (sums accumulated in float64).

    Parameters
    ----------
    values : torch.Tensor
        A real floating-point tensor (float16, bfloat16, float32 or float64; the mean of
        integers is not an integer, so cast them first).
    labels : torch.Tensor
        Integer cluster ids of ``values``' shape (any integer dtype, any non-negative
        values): those of :func:`prox` with ``return_clusters=True`` or of
        :meth:`WeightSharing.clusters`, or ids of your own.
    dim : int or None, optional
        The problem layout: None (default) for one problem over the whole tensor (equal
        ids anywhere form one cluster), an int for independent slices along that
        dimension (equal ids form one cluster only within a slice).

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``values``.

    Raises
    ------
    TypeError
        ``values`` not a dense floating-point tensor, or ``labels`` not an integer tensor.
    ValueError
        ``values`` on a device other than CPU or CUDA, ``labels`` of another shape than
        ``values``, or negative.

    Notes
    -----
    The ids are renumbered ``0..K-1`` per problem by a sort (:math:`O(n \log n)`), so
    their size does not matter and the sums take buffers of ``values.numel()`` entries.
    """
    _check_tensor(values, "values")
    if not values.is_floating_point():
        raise TypeError(f"values must be a floating-point tensor, got {values.dtype}; cast it, e.g. values.double()")
    dim = _normalize_dim(dim, values.dim())
    ids = _labels_from_values(_checked_labels(labels, values), dim)
    return _block_mean(values, ids, dim)


def _checked_labels(labels: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Cluster ids checked (an integer tensor of ``values``' shape, non-negative; one host sync),
    returned as int64 on ``values``' device (index ops take no other integer dtype)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.shape != values.shape:
        raise ValueError(f"labels has shape {tuple(labels.shape)}, expected {tuple(values.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    ids = labels.to(device=values.device, dtype=torch.int64)
    if ids.numel() and int(ids.min()) < 0:  # uint64 ids of 2**63 and more wrap to negative here
        raise ValueError("labels must be >= 0 (and below 2**63)")
    return ids


def _segment_mean(flat: torch.Tensor, ids: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Every entry of the 1-D ``flat`` replaced by the float64 mean of its segment ``ids`` (< ``n_segments``).

    Differentiable in ``flat`` (out-of-place ops only), no host sync; the result has
    ``flat``'s dtype.
    """
    wide = flat.to(torch.float64)
    sums = torch.zeros(n_segments, dtype=torch.float64, device=flat.device).index_add(0, ids, wide)
    counts = torch.zeros(n_segments, dtype=torch.float64, device=flat.device).index_add(0, ids, torch.ones_like(wide))
    return (sums / counts.clamp_min(1)).index_select(0, ids).to(flat.dtype)


def _block_mean(values: torch.Tensor, blocks: torch.Tensor, dim) -> torch.Tensor:
    """:func:`cluster_mean` for the backend's blocks, differentiable in ``values``, no host sync.

    The blocks of one problem are numbered below its size ``d``, so problem ``k``'s
    blocks get the ids ``k d .. k d + d - 1``: buffers of ``values.numel()`` entries hold
    every sum without counting the blocks first.
    """
    n = values.numel()
    if n == 0:
        return values
    ids = _moved_flat(blocks, dim)
    if dim is not None:
        d = values.shape[dim]
        ids = (ids.reshape(-1, d) + torch.arange(0, n, d, device=ids.device)[:, None]).reshape(-1)
    return _unmove(_segment_mean(_moved_flat(values, dim), ids, n), values, dim)


def _prox_derivative(v: torch.Tensor, lam: float, blocks, mask, dim) -> torch.Tensor:
    """The Jacobian of the prox (symmetric) applied to ``v``, with differentiable ops."""
    out = v if lam == 0 else _block_mean(v, blocks, dim)
    if mask is not None:
        out = out * mask  # clusters thresholded to zero do not move with the input
    return out


class _Prox(torch.autograd.Function):
    """Outputs ``(x, blocks, mask)``; only ``x`` is differentiable (see :func:`_forward`)."""

    @staticmethod
    def forward(t, lam, l1, dim, backend, want_blocks):
        return _forward(t, lam, l1, dim, backend, want_blocks, l1 > 0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, lam, _, dim, _, _ = inputs
        _, blocks, mask = output
        ctx.mark_non_differentiable(*(o for o in (blocks, mask) if o is not None))
        ctx.lam = lam
        ctx.dim = dim
        saved = (blocks if lam > 0 else None, mask)  # x itself is not needed: in-place edits of it are fine
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)

    @staticmethod
    def backward(ctx, grad_x, grad_blocks, grad_mask):
        blocks, mask = ctx.saved_tensors
        return _prox_derivative(grad_x, ctx.lam, blocks, mask, ctx.dim), None, None, None, None, None

    @staticmethod
    def jvp(ctx, t_dot, *_):
        blocks, mask = ctx.saved_tensors
        x_dot = _prox_derivative(t_dot, ctx.lam, blocks, mask, ctx.dim)
        return (x_dot.clone() if x_dot is t_dot else x_dot), None, None

    @staticmethod
    def vmap(info, in_dims, t, lam, l1, dim, backend, want_blocks):
        if in_dims[0] is None:
            return _Prox.apply(t, lam, l1, dim, backend, want_blocks), (None, None, None)
        batched = t.movedim(in_dims[0], 0)
        if dim is None:  # one problem per sample: its rows
            rows = batched.reshape(batched.shape[0], -1)
            outputs = _Prox.apply(rows, lam, l1, 1, backend, want_blocks)
            outputs = tuple(None if o is None else o.reshape(batched.shape) for o in outputs)
        else:
            outputs = _Prox.apply(batched, lam, l1, dim + 1, backend, want_blocks)
        return outputs, tuple(None if o is None else 0 for o in outputs)


@_opaque
def _compute(t, lam, l1, dim, backend, return_clusters):
    """The prox and (if wanted) the user-facing labels, through autograd when needed."""
    differentiable = t.is_floating_point() and ((t.requires_grad and torch.is_grad_enabled()) or _has_tangent(t))
    if differentiable or _is_transformed(t):
        x, blocks, _ = _Prox.apply(t, lam, l1, dim, backend, return_clusters or lam > 0)
    else:
        x, blocks, _ = _forward(t, lam, l1, dim, backend, return_clusters and t.dtype not in _HALF, False)
    if not return_clusters:
        return x, None
    # groups of equal value after the cast to a half precision, as for every dtype
    return x, (_labels_from_values(x.detach(), dim) if t.dtype in _HALF else blocks)


def prox(t, lam, *, l1=0.0, dim=None, backend="auto", return_clusters=False):
    r"""The prox of the weight-sharing regularizer for tensors, differentiable in ``t``.

    Same semantics as :func:`wsprox.prox`, with ``dim`` in the role of ``axis``.

    Parameters
    ----------
    t : torch.Tensor
        Dense (strided) CPU or CUDA tensor. float16/float32/float64/bfloat16 keep their
        dtype (float16 and bfloat16 are computed in float32 and cast back); integer and
        bool tensors give float64. Must be finite.
    lam : float
        Strength ``>= 0`` of the weight-sharing term (a Python or numpy number, or a 0-d
        tensor that does not require grad).
    l1 : float, optional
        Strength ``>= 0`` of the L1 term. Default 0.
    dim : int or None, optional
        None (default): the whole tensor is one problem. An int: independent problems
        along ``dim``.
    backend : str, optional
        ``"auto"`` (default: numba for CPU tensors, cuda for CUDA tensors) or a
        registered name.
    return_clusters : bool, optional
        Also return the int64 cluster ids (groups of equal output value, ``0..K-1`` in
        increasing order of value per problem; for float16 and bfloat16, of equal value
        after the cast back).

    Returns
    -------
    x : torch.Tensor
        The prox, on ``t``'s device. Requires grad if ``t`` does. With an int ``dim``
        other than the last, ``x`` (and ``labels``) are the backend's output moved back
        (``x.movedim(dim, -1)`` is contiguous), not C-contiguous copies: ``x.view`` of
        another shape may need ``x.contiguous()`` first (``reshape`` copies when needed).
    labels : torch.Tensor
        Only with ``return_clusters=True``.

    Raises
    ------
    TypeError
        ``t`` not a tensor, not strided (e.g. sparse), or of an unsupported dtype; bad
        types of the other arguments.
    ValueError
        ``t`` on a device other than CPU or CUDA (e.g. ``meta``), non-finite values,
        negative or non-finite ``lam``/``l1``, an unknown or unavailable backend, or one
        that does not take ``t``'s kind of array.
    IndexError
        ``dim`` out of range.

    Notes
    -----
    The prox is piecewise linear: inside a cluster :math:`B` every output is the mean of
    :math:`w_j + v_{\text{rank}(j)}` over :math:`B`, so :math:`\partial x_i / \partial
    w_j = 1/|B|` for :math:`i, j \in B` and 0 otherwise. The vector-Jacobian product
    therefore averages the incoming gradient over each cluster (the clusters of the
    forward pass, saved with it), and gives zero to clusters that the L1 term set to 0.
    For float16 and bfloat16 these are the clusters of the float32 computation, so two
    clusters that round to one half-precision value are not averaged together. With
    ``lam = 0`` the prox is the identity (soft thresholding with ``l1 > 0``) and its
    Jacobian the identity (times the mask of nonzero outputs), tied inputs or not. At
    the (measure-zero) inputs where a cluster is about to split or merge this is one
    element of the Clarke generalized Jacobian.

    The Jacobian :math:`J` is symmetric, so forward mode (``jvp``) applies the same
    average to the tangent. The backward pass is itself differentiable (it is linear in
    the incoming gradient): the second derivative of the prox is 0, as for any piecewise
    linear map, and Hessians of compositions are right, e.g. :math:`2 J^\top J` for
    ``(prox(t) ** 2).sum()``. The output itself is not saved for backward (only its
    clusters and, with ``l1 > 0``, the mask of its nonzero entries), so it may be
    modified in place before ``backward``.

    Examples
    --------
    >>> import torch, wsprox.torch as wt
    >>> t = torch.tensor([0.0, 1.0, 5.0], requires_grad=True)
    >>> x = wt.prox(t, 2.0)
    >>> x
    tensor([1.5000, 1.5000, 3.0000], grad_fn=<_ProxBackward>)
    >>> x.sum().backward(); t.grad
    tensor([1., 1., 1.])
    """
    _check_tensor(t)
    lam = check_strength(lam, "lam")
    l1 = check_strength(l1, "l1")
    dim = _normalize_dim(dim, t.dim())
    if not isinstance(return_clusters, bool):
        raise TypeError(f"return_clusters must be a bool, got {type(return_clusters).__name__}")
    x, labels = _compute(t, lam, l1, dim, backend, return_clusters)
    return (x, labels) if return_clusters else x


def penalty(t, *, dim=None):
    r"""The weight-sharing regularizer :math:`R` of a tensor, differentiable (sort based).

    Parameters
    ----------
    t : torch.Tensor
        Real floating, dense (strided) tensor on the CPU or a CUDA device. Must be finite.
    dim : int or None
        None: R of the whole tensor (a 0-d tensor). An int: R of every slice along
        ``dim`` (that dimension removed).

    Returns
    -------
    torch.Tensor
        In ``t``'s dtype, computed in float64.

    Raises
    ------
    TypeError
        ``t`` not a tensor, not strided (e.g. sparse) or not floating.
    ValueError
        ``t`` on a device other than CPU or CUDA (``meta`` included: the same rule as
        :func:`prox`), or non-finite values.
    IndexError
        ``dim`` out of range.

    Notes
    -----
    :math:`R(w) = \frac{1}{d-1}\sum_k (2k - d + 1)\, x_k` with :math:`x` sorted ascending:
    :math:`O(d \log d)`. Its gradient is the subgradient :math:`(2\,\text{rank}(w_i) - d +
    1)/(d - 1)` (ties get the ranks the sort gives them). 0 for ``d <= 1``.
    """
    _check_tensor(t)
    if not t.is_floating_point():
        raise TypeError(f"t must be a floating tensor for penalty, got {t.dtype}")
    dim = _normalize_dim(dim, t.dim())
    _check_finite_opaque(t)
    rows = t.reshape(1, -1) if dim is None else t.movedim(dim, -1)
    d = rows.shape[-1]
    if d <= 1:
        value = (rows * 0).sum(-1)
    else:
        xs = torch.sort(rows.to(torch.float64), dim=-1).values
        xs = xs - xs[..., d // 2 : d // 2 + 1].detach()  # the coefficients sum to 0: only accuracy changes
        coef = (2 * torch.arange(d, device=t.device, dtype=torch.float64) - (d - 1)) / (d - 1)
        value = (xs * coef).sum(-1)
    value = value.to(t.dtype)
    return value.reshape(()) if dim is None else value


# --------------------------------------------------------------------------- metrics


def sharing_metrics(x: torch.Tensor, labels: torch.Tensor, *, dim=None) -> dict[str, float]:
    """The paper's metrics of a regularized tensor, from its cluster ids.

    Parameters
    ----------
    x : torch.Tensor
        The regularized tensor (e.g. the output of :func:`prox`).
    labels : torch.Tensor
        Its cluster ids: integers of ``x``'s shape, e.g. as :func:`prox` returns them
        with ``return_clusters=True`` or :meth:`WeightSharing.clusters`; a problem's
        count is the number of distinct ids in it.
    dim : int or None, optional
        The problem layout used for ``labels``: None (default) for one problem over the
        whole tensor, an int for independent slices along that dimension.

    Returns
    -------
    dict
        ``distinct_ratio``: number of distinct values (summed over problems) / numel;
        ``zero_ratio``: fraction of exact zeros. Both 0.0 for an empty tensor.

    Raises
    ------
    TypeError
        ``x`` not a tensor, ``labels`` not an integer tensor.
    ValueError
        ``labels`` of another shape than ``x``, or negative.

    Notes
    -----
    A few scalar host synchronizations and a sort of the labels (they are renumbered
    per problem); nothing of the tensor's size is copied to the host.
    """
    _check_tensor(x, "x")
    dim = _normalize_dim(dim, x.dim())
    return _metrics_of(x, _labels_from_values(_checked_labels(labels, x), dim), dim)


def _metrics_of(x: torch.Tensor, labels: torch.Tensor, dim) -> dict[str, float]:
    """:func:`sharing_metrics` of labels numbered ``0..K-1`` per problem (those of :func:`prox`)."""
    n = x.numel()
    if n == 0:
        return {"distinct_ratio": 0.0, "zero_ratio": 0.0}
    _, n_clusters = _global_ids(labels, dim)
    return {"distinct_ratio": n_clusters / n, "zero_ratio": float((x == 0).sum()) / n}


# --------------------------------------------------------------------------- training hooks


def _named_params(params) -> list[tuple[str, torch.Tensor]]:
    if isinstance(params, torch.Tensor):
        raise TypeError("params must be an iterable of tensors or of (name, tensor) pairs, not a single tensor")
    named = []
    for k, item in enumerate(params):
        if isinstance(item, torch.Tensor):
            named.append((f"param{k}", item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], torch.Tensor):
            named.append((str(item[0]), item[1]))
        else:
            raise TypeError(f"params[{k}] must be a tensor or a (name, tensor) pair, got {type(item).__name__}")
    if not named:
        raise ValueError("params is empty")
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ValueError("params has duplicate names")
    _check_distinct(named)
    return named


def _memory_of(p: torch.Tensor):
    """What identifies the elements of ``p`` (None for empty tensors, which hold none)."""
    if p.numel() == 0:
        return None
    return (p.device, p.data_ptr(), tuple(p.shape), p.stride())


def _byte_extent(p: torch.Tensor) -> tuple[int, int]:
    """Bytes ``[lo, hi)`` of ``p``'s storage that hold its elements, first to last (``p`` not empty)."""
    size = p.element_size()
    last = p.storage_offset() + sum((n - 1) * s for n, s in zip(p.shape, p.stride()))
    return p.storage_offset() * size, (last + 1) * size


def _storage_offsets(t: torch.Tensor, chunk: int = 1 << 20):
    """The storage offsets (in elements) of ``t``'s elements, in chunks of at most ``chunk`` (int64, CPU)."""
    for first in range(0, t.numel(), chunk):
        flat = torch.arange(first, min(first + chunk, t.numel()))
        offsets = torch.full_like(flat, t.storage_offset())
        for n, stride in zip(reversed(t.shape), reversed(t.stride())):
            offsets += (flat % n) * stride
            flat = flat // n
        yield offsets


def _share_elements(p: torch.Tensor, q: torch.Tensor) -> bool:
    """True if the non-empty tensors ``p`` and ``q`` have an element in common (views of one storage).

    Tensors whose byte extents meet are compared element by element: one mark per element
    of the storage where both extents meet (``q``'s elements there), then a look-up of
    ``p``'s, in chunks (once, at construction). With different element sizes, meeting
    extents count as shared.
    """
    if p.device != q.device or p.untyped_storage().data_ptr() != q.untyped_storage().data_ptr():
        return False
    (p_lo, p_hi), (q_lo, q_hi) = _byte_extent(p), _byte_extent(q)
    lo, hi = max(p_lo, q_lo), min(p_hi, q_hi)
    if hi <= lo:
        return False
    size = p.element_size()
    if q.element_size() != size:
        return True
    lo, hi = lo // size, hi // size
    marked = torch.zeros(hi - lo, dtype=torch.bool)
    for offsets in _storage_offsets(q):
        marked[offsets[(offsets >= lo) & (offsets < hi)] - lo] = True
    for offsets in _storage_offsets(p):
        if bool(marked[offsets[(offsets >= lo) & (offsets < hi)] - lo].any()):
            return True
    return False


def _check_distinct(named) -> None:
    """Raise ValueError if one tensor is listed twice, or two listed tensors share elements.

    The same object or a view of the same elements is "listed twice"; views that overlap
    otherwise (a row of a listed matrix, say) would be written by both parameters' updates.
    """
    seen_ids: dict[int, str] = {}
    seen_memory: dict[tuple, str] = {}
    kept: list[tuple[str, torch.Tensor]] = []
    for name, p in named:
        memory = _memory_of(p)
        first = seen_ids.get(id(p), seen_memory.get(memory) if memory is not None else None)
        if first is not None:
            raise ValueError(f"params lists the same tensor twice, as {first!r} and {name!r}; list it once")
        seen_ids[id(p)] = name
        if memory is None:
            continue
        for other, q in kept:
            if _share_elements(p, q):
                raise ValueError(
                    f"params {other!r} and {name!r} share elements (overlapping views of one storage);"
                    " each element may belong to one listed tensor only"
                )
        seen_memory[memory] = name
        kept.append((name, p))


def _group_of(optimizer, p) -> dict:
    for group in optimizer.param_groups:
        if any(q is p for q in group["params"]):
            return group
    raise ValueError("a parameter in params is not optimized by this optimizer")


def _lr_of(group: dict) -> float:
    """The learning rate of a param group as a float (a 1-element tensor lr is read), checked."""
    lr = group.get("lr")
    if isinstance(lr, torch.Tensor) and lr.numel() == 1:  # torch also takes a tensor lr that requires grad
        lr = lr.detach().reshape(()).item()
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(
            f"its param group's lr must be a real number (the prox strengths are lr * lam, lr * l1), got {lr!r:.60}"
        )
    return check_strength(lr, "its param group's lr")


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")


def _checked_backend(backend, params) -> str:
    """``backend`` if it is ``"auto"`` or an available backend that takes every one of ``params``' devices."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, got {type(backend).__name__}")
    if backend == "auto":
        return backend
    from ._registry import get_backend

    solver = get_backend(backend)
    for name, p in params:
        kind = "cuda" if p.device.type == "cuda" else "numpy"
        if kind not in solver.array_kinds:
            raise ValueError(
                f"parameter {name!r}: backend {backend!r} does not take {p.device.type} tensors"
                f" (it takes {solver.array_kinds})"
            )
    return backend


class WeightSharing:
    r"""Proximal steps of weight-sharing regularization after every ``optimizer.step()``.

    After each step, every listed parameter :math:`p` is replaced by
    :math:`\operatorname{prox}_{\eta\lambda R + \eta\mu\|\cdot\|_1}(p)`, with :math:`\eta`
    the current learning rate of :math:`p`'s parameter group (so LR schedulers work).
    This is proximal gradient descent on ``loss + lam * R + l1 * ||.||_1``.

    As torch's optimizers do with their own weight decay, the hook leaves alone a
    parameter whose ``.grad`` is None at that step (a frozen or unused parameter, which
    the optimizer did not move either); :meth:`apply` called directly moves every one.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer whose param groups have a real ``lr``; the hook is registered with ``register_step_post_hook``.
    params : iterable of torch.Tensor or of (str, torch.Tensor)
        The regularized parameters (e.g. ``model.named_parameters()`` filtered), all
        optimized by ``optimizer``, each listed once: a tensor listed twice (under two
        names, or as two tensors with the same elements such as ``p`` and ``p.data``),
        or two tensors that share some elements (a matrix and one of its rows), raises
        ValueError.
    lam : float
        Strength of :math:`R`.
    l1 : float, optional
        Strength of the L1 term.
    dim : int or None, optional
        None (default, as in the paper): the whole tensor is one problem. An int:
        independent problems along ``dim``.
    rho : float, optional
        Damping in ``[0, 1)`` from the paper's code, a reproduction aid: each cluster
        moves only ``(1 - rho)`` of the way from its members' mean to its prox value
        (clusters stay tied, zeros stay zero). Default 0 (the exact prox).
    backend : str, optional
        Passed to :func:`prox`: ``"auto"`` (default) or a registered backend that is
        available here and takes the parameters' device (checked at construction, so
        that a bad name fails before the first step rather than inside its hook).

    Raises
    ------
    TypeError, ValueError, IndexError
        Bad settings, a parameter the optimizer does not hold, listed twice or sharing
        elements with another, a param
        group without a real ``lr >= 0``, an unknown or unavailable backend, or one that
        does not take a parameter's device.

    Examples
    --------
    >>> import torch, wsprox.torch as wt
    >>> model = torch.nn.Linear(4, 3)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> ws = wt.WeightSharing(opt, [("weight", model.weight)], lam=0.5)
    >>> model(torch.ones(2, 4)).sum().backward(); opt.step()
    >>> sorted(ws.metrics()["weight"])
    ['distinct_ratio', 'zero_ratio']
    >>> ws.remove()
    """

    def __init__(self, optimizer, params, lam, *, l1=0.0, dim=None, rho=0.0, backend="auto"):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        self.params = _named_params(params)
        for name, p in self.params:
            try:
                _lr_of(_group_of(optimizer, p))
            except (TypeError, ValueError) as error:
                raise type(error)(f"parameter {name!r}: {error}") from error
        self.lam, self.l1, self.dim, self.rho = self._validated(lam=lam, l1=l1, dim=dim, rho=rho)
        self.backend = _checked_backend(backend, self.params)
        self.steps = 0
        self._clusters: dict[str, torch.Tensor] = {}
        self._metrics: dict[str, dict[str, float]] = {}
        self._handle = optimizer.register_step_post_hook(self._after_step)

    def _validated(self, *, lam, l1, dim, rho) -> tuple:
        """The settings checked and normalized, as ``(lam, l1, dim, rho)``; assigns nothing."""
        lam = check_strength(lam, "lam")
        l1 = check_strength(l1, "l1")
        for _, p in self.params:
            _normalize_dim(dim, p.dim())
        dim = None if dim is None else int(dim)
        rho = check_strength(rho, "rho")
        if rho >= 1:
            raise ValueError(f"rho must be in [0, 1), got {rho}")
        return lam, l1, dim, rho

    def _after_step(self, optimizer, args, kwargs):
        self._step([(name, p) for name, p in self.params if p.grad is not None])

    @torch.no_grad()
    def apply(self) -> None:
        """Apply one proximal step to every listed parameter now.

        The hook does this after every ``step()``, to the parameters that have a gradient.
        The step is all or nothing: the new values of every listed parameter are computed
        before any parameter is written, so an error (a non-finite parameter, say) leaves
        the parameters, :meth:`clusters`, :meth:`metrics` and ``steps`` as they were, and its
        message names the parameter. The price is one temporary copy of all listed
        parameters at once rather than of the largest one.
        """
        self._step(self.params)

    @torch.no_grad()
    def _step(self, params) -> None:
        """:meth:`apply` for the ``(name, tensor)`` pairs ``params``."""
        results = []
        for name, p in params:
            try:
                lr = _lr_of(_group_of(self.optimizer, p))
                dim = _normalize_dim(self.dim, p.dim())
                x, labels = prox(
                    p.detach(), lr * self.lam, l1=lr * self.l1, dim=dim, backend=self.backend, return_clusters=True
                )
            except (TypeError, ValueError) as error:
                raise type(error)(f"parameter {name!r}: {error}") from error
            if self.rho > 0:
                mean = _block_mean(p.detach(), labels, dim)  # labels numbered 0..K-1 per problem
                x = torch.where(x == 0, x, x + self.rho * (mean - x))
            # ids unique across the whole tensor, so that they mean the same with any dim
            ids = labels if dim is None else _unmove(_global_ids(labels, dim)[0], labels, dim)
            results.append((name, p, x, ids, _metrics_of(x, labels, dim)))
        for name, p, x, ids, metrics in results:
            p.copy_(x)
            self._clusters[name] = ids
            self._metrics[name] = metrics
        self.steps += 1

    def metrics(self) -> dict[str, dict[str, float]]:
        """Per parameter name, the distinct-weight and zero ratios after its last proximal step.

        Returns
        -------
        dict of str to dict
            ``{name: {"distinct_ratio": float, "zero_ratio": float}}`` (see
            :func:`sharing_metrics`), a copy; empty before the first step.
        """
        return {name: dict(m) for name, m in self._metrics.items()}

    def clusters(self) -> dict[str, torch.Tensor]:
        """Per parameter name, the cluster ids after its last proximal step (for :class:`TiedWeights`).

        Returns
        -------
        dict of str to torch.Tensor
            ``{name: ids}``, int64 tensors of the parameters' shapes and devices; empty
            before the first step. The ids are unique across the whole tensor (also with
            ``dim``): members of one id belong to one problem and share one value.
        """
        return dict(self._clusters)

    def remove(self) -> None:
        """Detach the hook from the optimizer."""
        self._handle.remove()

    def state_dict(self) -> dict:
        """Settings and step count (parameters themselves live in the model's state).

        Returns
        -------
        dict
            ``{"lam", "l1", "dim", "rho", "steps"}``: plain Python numbers (and None),
            for :meth:`load_state_dict`.
        """
        return {"lam": self.lam, "l1": self.l1, "dim": self.dim, "rho": self.rho, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned.

        Parameters
        ----------
        state : dict
            A :meth:`state_dict` of a :class:`WeightSharing` over parameters of the same
            dimensions.

        Raises
        ------
        KeyError, TypeError, ValueError, IndexError
            A missing key, or a setting the constructor would refuse. Everything is
            checked before anything is assigned, so the object is then unchanged.
        """
        missing = {"lam", "l1", "dim", "rho", "steps"} - set(state)
        if missing:
            raise KeyError(f"state_dict is missing {sorted(missing)}")
        settings = self._validated(lam=state["lam"], l1=state["l1"], dim=state["dim"], rho=state["rho"])
        steps = state["steps"]
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)):
            raise TypeError(f"steps must be an int, got {type(steps).__name__}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.lam, self.l1, self.dim, self.rho = settings
        self.steps = int(steps)


class TiedWeights:
    """Retrain with frozen weight-sharing groups: after every step, each cluster takes its mean.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimizer of the retraining.
    params : iterable of (torch.Tensor, labels) or of (name, torch.Tensor, labels)
        Parameters and their cluster ids (e.g. from :meth:`WeightSharing.clusters`),
        each parameter listed once (a tensor listed twice, or two tensors that share
        elements, raise ValueError).
    dim : int or None, optional
        The problem layout of the labels: None (default) when equal ids anywhere in the
        tensor form one group (as :meth:`WeightSharing.clusters` returns them, with or
        without its ``dim``), an int when they are numbered per slice along that
        dimension (as :func:`prox` returns them). Any non-negative integer ids of any
        integer dtype; they are renumbered once, at construction.

    Raises
    ------
    TypeError
        An item that is not such a tuple of tensors, or labels that are not an integer
        tensor (bool, floating and complex labels are refused); the message names the
        parameter.
    ValueError
        Labels of another shape than their parameter, or negative; ``params`` empty or
        with duplicate names; a parameter the optimizer does not hold, listed twice or
        sharing elements with another. At a step: a parameter whose shape has
        changed since construction (the message names it; no parameter is projected).
    IndexError
        ``dim`` out of range for a parameter.

    Everything is checked before the first projection, so a bad item leaves every
    parameter as it was.

    Notes
    -----
    Projecting onto the tying pattern (every member of a cluster equal) is the Euclidean
    projection onto a linear subspace, so this is projected gradient descent on the
    tied model. The projection is also applied once at construction.
    """

    def __init__(self, optimizer, params, *, dim=None):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        self.dim = dim
        self.params = []
        for k, item in enumerate(params):
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise TypeError(f"params[{k}] must be (tensor, labels) or (name, tensor, labels)")
            name, p, labels = item if len(item) == 3 else (f"param{k}", *item)
            if not isinstance(p, torch.Tensor) or not isinstance(labels, torch.Tensor):
                raise TypeError(f"params[{k}] must hold tensors")
            try:
                ids = _checked_labels(labels, p)
                _group_of(optimizer, p)
            except (TypeError, ValueError) as error:
                raise type(error)(f"parameter {name!r}: {error}") from error
            p_dim = _normalize_dim(dim, p.dim())
            self.params.append((name, p, _labels_from_values(ids, p_dim)))
        if not self.params:
            raise ValueError("params is empty")
        names = [name for name, _, _ in self.params]
        if len(set(names)) != len(names):
            raise ValueError("params has duplicate names")
        _check_distinct([(name, p) for name, p, _ in self.params])
        self.apply()
        self._handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply())

    @torch.no_grad()
    def apply(self) -> None:
        """Project every parameter onto its tying pattern now.

        All or nothing, as :meth:`WeightSharing.apply`: every projection is computed before
        any parameter is written.
        """
        for name, p, ids in self.params:
            if p.shape != ids.shape:
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(p.shape)}, "
                    f"its labels {tuple(ids.shape)} (given at construction)"
                )
        tied = [_block_mean(p.detach(), ids, _normalize_dim(self.dim, p.dim())) for _, p, ids in self.params]
        for (_, p, _), x in zip(self.params, tied):
            p.copy_(x)

    def remove(self) -> None:
        """Detach the hook from the optimizer."""
        self._handle.remove()
