"""Input checks shared by the public functions. Every check raises before any work is done."""

from __future__ import annotations

import numbers
import operator

import numpy as np

__all__ = [
    "check_strength",
    "as_host_array",
    "resolve_dtypes",
    "normalize_axis",
    "check_finite",
    "check_out",
    "is_device_array",
    "nonfinite_message",
]


def check_strength(value, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite real scalar >= 0.

    0-d arrays (numpy, and any with ``ndim == 0`` and ``item()``: torch, CuPy) are read as
    their element; a torch tensor that requires grad is refused, as the prox is not
    differentiated in its strengths."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    elif not isinstance(value, numbers.Real) and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        if getattr(value, "requires_grad", False):
            raise TypeError(f"{name} is a tensor that requires grad; wsprox does not differentiate in {name}")
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real scalar, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be finite, got {value!r:.40}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def is_device_array(obj) -> bool:
    """True for GPU arrays: objects exposing ``__cuda_array_interface__`` (not numpy arrays),
    and the device arrays of numba's CUDA simulator (which lack that interface)."""
    if isinstance(obj, np.ndarray):
        return False
    return hasattr(obj, "__cuda_array_interface__") or type(obj).__module__.startswith("numba.cuda.simulator")


def as_host_array(w, name: str = "w") -> np.ndarray:
    """``np.asarray(w)`` without copying, with a TypeError for what numpy cannot hold as numbers.

    A masked array with masked entries is refused (ValueError): ``np.asarray`` would drop the
    mask and the masked (arbitrary) values would silently enter the result."""
    if isinstance(w, np.ma.MaskedArray):
        masked = int(np.count_nonzero(np.ma.getmaskarray(w)))
        if masked:
            raise ValueError(
                f"{name} is a masked array with {masked} masked entries; wsprox does not support masks: "
                f"pass {name}.filled(value) or {name}.compressed()"
            )
    try:
        arr = np.asarray(w)
    except Exception as exc:  # ragged lists, objects with a failing __array__
        raise TypeError(f"{name} must be array-like, got {type(w).__name__}: {exc}") from None
    return arr


def resolve_dtypes(dtype: np.dtype, name: str = "w") -> tuple[np.dtype, np.dtype]:
    """Return ``(compute_dtype, output_dtype)`` for an input dtype.

    float32 -> float32, float64 -> float64, float16 -> computed in float32 and returned
    as float16, bool/integer -> float64 (non-native byte order: the native dtypes).
    Anything else raises TypeError.
    """
    if dtype.byteorder not in "=|":
        dtype = dtype.newbyteorder("=")
    if dtype == np.float32 or dtype == np.float64:
        return dtype, dtype
    if dtype == np.float16:
        return np.dtype(np.float32), dtype
    if dtype.kind in "biu":
        return np.dtype(np.float64), np.dtype(np.float64)
    raise TypeError(
        f"{name} has unsupported dtype {dtype}; expected a real floating dtype "
        "(float16, float32, float64), an integer or a bool dtype"
    )


def normalize_axis(axis, ndim: int) -> int | None:
    """Return ``axis`` as a non-negative int (or None); raise for a bad axis."""
    if axis is None:
        return None
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def check_finite(arr: np.ndarray, name: str = "w") -> None:
    """Raise ValueError naming the count and first position of non-finite entries."""
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return
    # One pass, no d-sized temporary: a NaN or an infinity makes the sum non-finite. A finite
    # array whose sum overflows takes the exact check below (and passes it).
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(arr.sum()):
            return
    bad = np.logical_not(np.isfinite(arr))
    if not bad.any():
        return
    first = np.unravel_index(int(np.argmax(bad.ravel())), arr.shape)
    raise ValueError(nonfinite_message(name, int(np.count_nonzero(bad)), first))


def nonfinite_message(name: str, count: int, first: tuple) -> str:
    """The error message for ``count`` non-finite entries, the first at multi-index ``first``."""
    first = tuple(int(i) for i in first)
    where = first[0] if len(first) == 1 else first
    return (
        f"{name} must be finite: {count} non-finite value{'s' if count > 1 else ''} (NaN or inf), "
        f"the first at index {where}"
    )


def check_out(out, shape: tuple, dtype: np.dtype) -> None:
    """Check that ``out`` can receive a result of ``shape`` and ``dtype`` (in either byte order).

    A masked array with masked entries is refused (ValueError): the results written
    there would stay hidden under its mask."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if isinstance(out, np.ma.MaskedArray):
        masked = int(np.count_nonzero(np.ma.getmaskarray(out)))
        if masked:
            raise ValueError(
                f"out is a masked array with {masked} masked entries, which would hide the results "
                "written there: pass an array without masked entries"
            )
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype.newbyteorder("=") != dtype:  # either byte order: the result is copied in (out may be w)
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
