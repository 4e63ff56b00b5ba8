"""Input families of ``wsprox compare``: typical and hard inputs of the prox (design/math.md).

Each family is a deterministic generator ``generate(d, lam, rng) -> float64 vector`` of
length ``d``; the hard ones are scaled to the strength ``lam`` so that they stay hard
whatever ``lam`` is. :func:`make_input` seeds, generates and converts to the dtype asked;
:func:`family_seed` gives the seed of a family from the run's seed and the family's name,
so that a family's input does not depend on which other families are run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Family", "FAMILIES", "DEFAULT_FAMILIES", "family_seed", "make_input"]


@dataclass(frozen=True)
class Family:
    """One input family.

    Attributes
    ----------
    name : str
        The name given to ``--families``.
    description : str
        One line saying what the input is and why it is interesting.
    generate : callable
        ``generate(d, lam, rng) -> numpy.ndarray`` (float64, shape ``(d,)``).
    """

    name: str
    description: str
    generate: Callable[[int, float, np.random.Generator], np.ndarray]


def _gauss(d, lam, rng):
    return rng.standard_normal(d)


def _gauss_heavy(d, lam, rng):
    return rng.standard_t(2.0, size=d)


def _adversarial(d, lam, rng):
    half = d // 2
    a = 2.25 * lam / d
    return np.concatenate([np.zeros(d - half), a * np.arange(1, half + 1)])


def _sorted(d, lam, rng):
    # ascending steps of 3 lam/(d-1) > 2 lam/(d-1): z = w + v is increasing, nothing pools
    return (3.0 * lam / max(d - 1, 1)) * np.arange(d)


def _reversed(d, lam, rng):
    # descending steps of lam/(d-1) < 2 lam/(d-1): z is decreasing, one block
    return (lam / max(d - 1, 1)) * np.arange(d)[::-1]


def _clustered(d, lam, rng):
    centres = np.array([-3.0, -1.0, 0.5, 2.0, 4.0])
    return centres[rng.integers(0, centres.size, d)] + 1e-6 * rng.standard_normal(d)


def _huge_lam(d, lam, rng):
    # spread of w about lam / 50: (almost) everything collapses to the mean
    return (lam / 500.0) * rng.standard_normal(d)


def _spike(d, lam, rng):
    w = (lam / max(d - 1, 1)) * np.arange(d)
    w[0] = 10.0 * lam
    return w


def _binary(d, lam, rng):
    return rng.integers(0, 2, d).astype(np.float64)


#: Every family, by name, in the order in which tables list them.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("gauss", "i.i.d. standard normal", _gauss),
        Family("gauss-heavy", "heavy tailed: i.i.d. Student t with 2 degrees of freedom", _gauss_heavy),
        Family(
            "adversarial",
            "d/2 zeros then the ramp a*(1..d/2), a = 2.25*lam/d (about d/2 rounds of imminent collisions)",
            _adversarial,
        ),
        Family("sorted", "ascending, steps 3*lam/(d-1): nothing pools (d clusters)", _sorted),
        Family("reversed", "descending, steps lam/(d-1): everything pools (one cluster)", _reversed),
        Family("clustered", "5 well separated values plus a 1e-6 jitter, shuffled", _clustered),
        Family("huge-lam", "lam about 50 times the spread of w (one cluster)", _huge_lam),
        Family("spike", "a spike of 10*lam, then an ascending ramp of steps lam/(d-1)", _spike),
        Family("binary", "i.i.d. {0, 1} values (many ties)", _binary),
    )
}

#: Families of ``wsprox compare`` without ``--families``.
DEFAULT_FAMILIES = ("gauss", "gauss-heavy", "adversarial", "sorted", "reversed", "clustered", "huge-lam")


def family_seed(family: str, seed: int = 0) -> int:
    """The seed of ``family``'s input in a run of seed ``seed``: ``seed * 2**32 + crc32(family)``.

    Stable across processes and Python versions (``zlib.crc32``, unlike ``hash``), distinct
    for distinct ``(family, seed)`` pairs, and independent of the other families of the run.

    Parameters
    ----------
    family : str
        The family's name.
    seed : int, optional
        The run's seed (``wsprox compare --seed``), a non-negative integer.

    Returns
    -------
    int
        A non-negative integer, for :func:`make_input`.

    Raises
    ------
    ValueError
        If ``seed`` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed) * 2**32 + zlib.crc32(family.encode("utf-8"))


def make_input(family: str, d: int, lam: float, dtype: str = "float64", seed: int = 0) -> np.ndarray:
    """Return the contiguous input vector of ``family`` with ``d`` entries and the given ``dtype``.

    Parameters
    ----------
    family : str
        A key of :data:`FAMILIES`.
    d : int
        Length of the vector.
    lam : float
        The strength the input is made for (hard families are scaled to it).
    dtype : {"float64", "float32"}, optional
        The dtype of the result (generated in float64, then rounded).
    seed : int, optional
        Seed of the random generator (the same seed gives the same vector).

    Returns
    -------
    numpy.ndarray
        Shape ``(d,)``.

    Raises
    ------
    ValueError
        For an unknown family, or when the values overflow ``dtype`` (families scaled to
        ``lam`` reach up to ``10 lam``).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    w = FAMILIES[family].generate(int(d), float(lam), np.random.default_rng(seed))
    with np.errstate(over="ignore"):
        w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all():
        raise ValueError(
            f"the input family {family!r} at lam={lam:g} overflows {dtype} (families scaled to lam "
            "reach up to 10 * lam); choose a smaller lam"
        )
    return w
