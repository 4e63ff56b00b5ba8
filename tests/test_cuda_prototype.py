"""The numpy prototype of the cuda backend against an independent float64 PAVA reference.

Also holds the inputs and the reference shared with ``test_cuda_sim.py`` (the hard families
of design/math.md). Runs everywhere (no GPU, no simulator needed).
"""

from __future__ import annotations

import numpy as np
import pytest

from wsprox.solvers.cuda_prototype import DEFAULT_CHUNK, _chunk_pava, _Row, _tile_pava, prox_prototype, prox_rows


def pava_reference(w, lam, l1=0.0):
    """Plain float64 prox of one vector: sort, pool adjacent violators (ties pool), unsort, soft-threshold.

    Rows near the float64 limit are solved scaled by ``2**-64`` (exact; the prox is
    positively homogeneous), so that the sums stay finite.
    """
    w = np.asarray(w, np.float64)
    d = w.size
    if d == 0:
        return w.copy()
    if max(np.abs(w).max(), lam, l1) > 1e290 / d:
        s = 2.0**-64
        return pava_reference(w * s, lam * s, l1 * s) / s
    order = np.argsort(w, kind="stable")
    x = w[order]
    v = lam * (d - 1 - 2 * np.arange(d)) / (d - 1) if d > 1 else np.zeros(1)
    z = x + v
    sums, counts = [], []
    for value in z:
        s, c = float(value), 1
        while sums and sums[-1] * c >= s * counts[-1]:
            s += sums.pop()
            c += counts.pop()
        sums.append(s)
        counts.append(c)
    xs = np.repeat([s / c for s, c in zip(sums, counts)], counts)
    out = np.empty(d)
    out[order] = xs
    if l1 > 0:
        out = np.sign(out) * np.maximum(np.abs(out) - l1, 0.0) + 0.0
    return out


def labels_of_values(x):
    """Distinct values numbered 0..K-1 in increasing order."""
    _, inv = np.unique(x, return_inverse=True)
    return inv.reshape(x.shape).astype(np.int64)


def labels_of_runs(w, x):
    """Runs of equal ``x`` along the stable sort of ``w``, numbered 0..K-1 in that order."""
    order = np.argsort(w, kind="stable")
    xs = x[order]
    ids = np.empty(x.size, np.int64)
    ids[order] = np.concatenate([[0], np.cumsum(xs[1:] != xs[:-1])]) if x.size else []
    return ids


def make_family(name, d, lam, rng):
    """The hard input families of design/math.md."""
    half = d // 2
    if name == "gaussian":
        return rng.standard_normal(d)
    if name == "adversarial_ramp":
        a = 2.25 * lam / max(d, 1)
        return np.concatenate([np.zeros(d - half), a * np.arange(1, half + 1)])
    if name == "huge_lam":
        return rng.standard_normal(d) * lam * 1e-3
    if name == "clustered":
        return rng.integers(0, 4, d) + 1e-9 * rng.standard_normal(d)
    if name == "sorted":
        return np.arange(d) * (4.0 * lam + 1.0)
    if name == "reversed":
        return -np.arange(d) * 1e-3 * lam
    if name == "spike_ramp":
        w = np.arange(d) * (2.5 * lam / max(d - 1, 1))
        w[0] = -1e3 * lam - 1.0
        return w
    if name == "all_equal":
        return np.full(d, 0.75)
    if name == "zero_one":
        return rng.integers(0, 2, d).astype(np.float64)
    if name == "signed_zero":
        w = np.where(rng.random(d) < 0.5, -0.0, 0.0)
        w[: d // 3] = 1.0
        return w
    if name == "ties":
        return rng.integers(-3, 4, d) * 0.5
    if name == "integers":
        return rng.integers(-20, 21, d).astype(np.float64)
    if name == "huge_tiny":  # magnitudes from 1e-300 to 1e300 in one row
        return np.sign(rng.standard_normal(d)) * 10.0 ** rng.uniform(-300, 300, d)
    if name == "float64_overflow":  # differences and sums of the values overflow float64
        return np.sign(rng.standard_normal(d)) * rng.uniform(0.5, 1.0, d) * np.finfo(np.float64).max
    raise ValueError(name)


FAMILIES = [
    "gaussian",
    "adversarial_ramp",
    "huge_lam",
    "clustered",
    "sorted",
    "reversed",
    "spike_ramp",
    "all_equal",
    "zero_one",
    "signed_zero",
    "ties",
    "integers",
    "huge_tiny",
    "float64_overflow",
]
#: (tile, chunk) pairs: sequential tiles (chunk >= tile), chunk 1, chunks not dividing the tile.
TILE_CHUNKS = [(1, 1), (2, 1), (3, 2), (4, 2), (4, 4), (8, 3), (31, 4), (32, 8), (33, 8), (32, 1024), (1024, 8)]
#: Families whose float64 sums are exact (block partitions must match the reference exactly).
EXACT = {"all_equal", "zero_one", "signed_zero", "ties", "integers"}


# ----------------------------------------------------------------------------- tests
def _lam_for(name, d):
    """Exact families use lam = (d - 1) / 2 (velocities are exact halves); others a fixed lam."""
    if name in EXACT:
        return 0.5 * max(d - 1, 1)
    return 0.3


def _check(w, lam, l1, tile, dtype=np.float64, chunk=DEFAULT_CHUNK, monotone=True):
    """Prototype against the reference; labels number the runs of equal values along the sort of ``w``.

    ``monotone``: the output is also non-decreasing along that sort (so the labels grow
    with the value). Rows whose range inside one tile is some ``2**50`` times the spread
    of their blocks (``huge_tiny``) have rounding errors beyond the gaps between block
    values, within the documented bound; there only the runs are promised.
    """
    w = np.asarray(w, dtype)
    x, labels = prox_prototype(w, lam, l1, tile=tile, chunk=chunk, return_clusters=True)
    ref = pava_reference(w.astype(np.float64), lam, l1)
    assert x.dtype == dtype and x.shape == w.shape
    scale = float(np.abs(w).max(initial=0.0)) + lam + l1 + 1.0
    tol = (4e-6 if dtype == np.float32 else 1e-12) * scale
    np.testing.assert_allclose(x.astype(np.float64), ref, rtol=0, atol=tol)
    np.testing.assert_array_equal(labels, labels_of_runs(w, x))
    if monotone:  # groups of equal output value, 0..K-1 increasing
        np.testing.assert_array_equal(labels, labels_of_values(x))
    return x, labels, ref


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("d", [1, 2, 3, 31, 32, 33, 100])
def test_families_tiles(name, d):
    rng = np.random.default_rng(d)
    lam = _lam_for(name, d)
    w = make_family(name, d, lam, rng)
    first = None
    for tile, chunk in TILE_CHUNKS:
        x, labels, ref = _check(w, lam, 0.0, tile, chunk=chunk, monotone=name != "huge_tiny")
        if name in EXACT:
            np.testing.assert_array_equal(labels, labels_of_values(ref))
            if first is None:
                first = x
            np.testing.assert_array_equal(x, first)  # exact sums: every tiling gives the same bits


@pytest.mark.parametrize("chunk", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("tile", [7, 8, 9, 15, 16, 17])
def test_tile_size_plus_minus_one(tile, chunk):
    rng = np.random.default_rng(tile)
    for d in (tile - 1, tile, tile + 1, 2 * tile - 1, 2 * tile, 2 * tile + 1, 5 * tile + 3):
        for name in ("gaussian", "adversarial_ramp", "spike_ramp", "zero_one"):
            lam = _lam_for(name, d)
            _check(make_family(name, d, lam, rng), lam, 0.0, tile, chunk=chunk)


# the plain per-tile PAVA sums relative to the row's centre: no oracle for rows of huge range
@pytest.mark.parametrize("name", [name for name in FAMILIES if name not in ("huge_tiny", "float64_overflow")])
@pytest.mark.parametrize("tile, chunk", [(4, 1), (9, 2), (16, 3), (64, 8)])
def test_chunk_merge_gives_the_sequential_tile_hull(name, tile, chunk):
    """The tile stage's in-block bridge tree finds the vertices of the tile's sequential PAVA."""
    d = 5 * tile + 3
    lam = _lam_for(name, d)
    xs = np.sort(make_family(name, d, lam, np.random.default_rng(tile)))
    merged = _Row(xs, lam, tile, tile_refs=True)
    _tile_pava(merged, xs, chunk)
    plain = _Row(xs, lam, tile)  # one sequential PAVA per tile, sums relative to the row's centre
    _chunk_pava(plain, xs)
    np.testing.assert_array_equal(merged.vcnt, plain.vcnt)
    np.testing.assert_array_equal(merged.L, plain.L)
    np.testing.assert_array_equal(merged.R, plain.R)
    used = np.concatenate([np.arange(t * (tile + 1), t * (tile + 1) + plain.vcnt[t]) for t in range(plain.nt)])
    np.testing.assert_array_equal(merged.vpos[used], plain.vpos[used])
    tiles = used // (tile + 1)
    ref = np.array([xs[t * tile + min(tile, d - t * tile) // 2] for t in range(merged.nt)])
    np.testing.assert_array_equal(merged.ref_c, ref - merged.center)  # the reference: each tile's middle element
    # the tile stage sums x - ref_t; relative to the centre that is vcum + (position in tile) (ref_t - c)
    about_center = merged.vcum[used] + (merged.vpos[used] - tiles * tile) * merged.ref_c[tiles]
    scale = float(np.abs(xs).max()) * tile + 1.0
    np.testing.assert_allclose(about_center, plain.vcum[used], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(merged.tot, plain.tot, rtol=0, atol=1e-12 * scale)
    if name in EXACT:
        np.testing.assert_array_equal(about_center, plain.vcum[used])
        np.testing.assert_array_equal(merged.tot, plain.tot)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l1", [0.0, 0.05, 0.7])
def test_random_l1_dtypes(dtype, l1):
    rng = np.random.default_rng(7)
    for _ in range(30):
        d = int(rng.integers(1, 90))
        lam = float(rng.choice([0.0, 1e-3, 0.1, 1.0, 50.0]))
        w = rng.standard_normal(d) * float(rng.choice([0.01, 1.0, 100.0]))
        _check(w, lam, l1, int(rng.integers(1, 12)), dtype, chunk=int(rng.integers(1, 5)))


def test_integer_partitions_exact():
    rng = np.random.default_rng(11)
    for _ in range(60):
        d = int(rng.integers(2, 70))
        lam = 0.5 * (d - 1) * int(rng.integers(0, 4))
        w = rng.integers(-5, 6, d).astype(np.float64)
        x, labels, ref = _check(w, lam, 0.0, int(rng.integers(1, 9)), chunk=int(rng.integers(1, 4)))
        np.testing.assert_array_equal(labels, labels_of_values(ref))


def test_batched_rows_independent():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 37))
    x, labels = prox_rows(w, 0.4, 0.1, tile=4, return_clusters=True)
    for r in range(5):
        np.testing.assert_allclose(x[r], pava_reference(w[r], 0.4, 0.1), atol=1e-12)
        np.testing.assert_array_equal(labels[r], labels_of_values(x[r]))


def test_large_lam_gives_mean():
    rng = np.random.default_rng(5)
    w = rng.standard_normal(200)
    x = prox_prototype(w, 1e6, tile=8)
    np.testing.assert_allclose(x, np.full(200, w.mean()), atol=1e-8)


def test_signed_zero_and_huge_tiny():
    w = np.array([-0.0, 0.0, 1e-300, -1e-300, 1e300, -1e300, 0.0])
    _check(w, 0.0, 0.0, 2)
    w32 = np.array([3e38, -3e38, 3.4e38, 1.0, -1.0], np.float32)
    x = prox_prototype(w32, 1.0, tile=2)
    assert np.isfinite(x).all()


@pytest.mark.parametrize("tile, chunk", [(4, 2), (32, 8), (1024, 8)])
def test_float64_near_overflow_is_scaled_not_lost(tile, chunk):
    """Values and strengths near the float64 limit: solved in units of a power of two, not turned into inf/NaN."""
    top = np.finfo(np.float64).max
    x = prox_prototype(np.array([1.7e308, -1.7e308]), 1e308, tile=tile, chunk=chunk)
    np.testing.assert_allclose(x, [7e307, -7e307], rtol=1e-15)
    rng = np.random.default_rng(tile)
    for d in (10, 300):
        w = np.where(np.arange(d) % 2 == 0, top, -top) * (1 - 1e-3 * rng.random(d))
        w[d // 3] = 1.0  # a moderate value among them
        x, labels = prox_prototype(w, 1e308, 1e306, tile=tile, chunk=chunk, return_clusters=True)
        s = 2.0**-64  # the prox is positively homogeneous: compare with the scaled problem
        ref, ref_labels = prox_prototype(w * s, 1e308 * s, 1e306 * s, tile=tile, chunk=chunk, return_clusters=True)
        assert np.all(np.isfinite(x))
        np.testing.assert_allclose(x, ref / s, rtol=1e-14)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_allclose(x, pava_reference(w, 1e308, 1e306), rtol=0, atol=1e-12 * top)
    # a huge strength alone: every row pools into its mean (lam d overflows without the scaling)
    w = rng.standard_normal((3, 50))
    x = prox_rows(w, 1e308, tile=tile, chunk=chunk)[0]
    np.testing.assert_allclose(x, np.broadcast_to(w.mean(axis=1, keepdims=True), w.shape), rtol=0, atol=1e-12)


def test_overflow_scaling_is_per_row():
    """A huge row scales only itself: a moderate row in the same batch gives the bits it gives alone."""
    rng = np.random.default_rng(2)
    w = np.stack([rng.standard_normal(40), rng.uniform(-1, 1, 40) * 1.7e308])
    x, labels = prox_rows(w, 0.3, 0.01, tile=8, chunk=2, return_clusters=True)
    alone, alone_labels = prox_rows(w[:1], 0.3, 0.01, tile=8, chunk=2, return_clusters=True)
    np.testing.assert_array_equal(x[0], alone[0])
    np.testing.assert_array_equal(labels[0], alone_labels[0])
    assert np.all(np.isfinite(x[1]))
    np.testing.assert_allclose(x[1], pava_reference(w[1], 0.3, 0.01), rtol=0, atol=1e-12 * 1.7e308)


def test_bad_arguments():
    with pytest.raises(ValueError, match="2-D float32 or float64"):
        prox_rows(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="tile must be >= 1"):
        prox_rows(np.zeros((1, 3)), 1.0, tile=0)
    with pytest.raises(ValueError, match="chunk"):
        prox_rows(np.zeros((1, 3)), 1.0, chunk=0)


def test_docs_quote_the_cuda_defaults():
    """docs/algorithms.rst quotes the cuda backend's default tunables: they must be the code's."""
    import pathlib

    from wsprox.solvers import cuda_backend as cb

    text = (pathlib.Path(__file__).parents[1] / "docs" / "algorithms.rst").read_text()
    text = " ".join(text.split())
    log2 = {name: getattr(cb, name).bit_length() - 1 for name in ("UNSORT_MIN_SIZE", "UNSORT_WINDOW")}
    for quoted in (
        f"tiles of ``TILE`` elements ({cb.TILE} by default)",
        f"chunks of ``CHUNK`` elements ({cb.CHUNK} by default)",
        f"at most ``LOCAL`` weights ({cb.LOCAL} by default)",
        f"more than {cb.FUSED_LEVEL_PAIRS} merging pairs",
        f"at least :math:`2^{{{log2['UNSORT_MIN_SIZE']}}}` elements",
        f"(:math:`2^{{{log2['UNSORT_WINDOW']}}}` consecutive destinations, at most {cb._MAX_BUCKETS} windows)",
    ):
        assert quoted in text, quoted


def tile_tolerance(w, x_ref, labels_ref, lam, tile, dtype, labels_out=None):
    """Per element: 2 ulps of the output plus ``8 * 2**-53 (TILE s_T / |B| + max_B |w - c| + s_T + lam)``.

    ``B`` is the element's cluster in the reference, ``c`` the row's median, ``s_T`` the
    largest range of the weights of a tile (``TILE`` consecutive sorted weights) that ``B``
    touches: the accuracy promised for the ``cuda`` backend, which does not grow with ``d``.
    With ``labels_out`` (the clusters of the output checked) the larger of that bound and
    the one over the output's clusters: where rounding changed a pooling decision, the
    merged block carries the error of every tile it touches.
    """
    if labels_out is not None:
        tol_out = tile_tolerance(w, x_ref, labels_out, lam, tile, dtype)
        return np.maximum(tile_tolerance(w, x_ref, labels_ref, lam, tile, dtype), tol_out)
    w = np.asarray(w, np.float64)
    d = w.size
    unit = 2.0**-64 if max(np.abs(w).max(), lam) > 1e290 else 1.0  # ranges of huge rows would overflow
    order = np.argsort(w, kind="stable")
    xs = w[order] * unit
    lam = lam * unit
    center = xs[d // 2]
    starts = np.arange(0, d, tile)
    tile_range = xs[np.minimum(starts + tile, d) - 1] - xs[starts]
    sorted_labels = np.asarray(labels_ref)[order]
    first = np.concatenate([[0], np.flatnonzero(np.diff(sorted_labels)) + 1])  # cluster starts, sorted order
    size = np.diff(np.concatenate([first, [d]]))
    s_t = np.maximum.reduceat(tile_range[np.arange(d) // tile], first)  # over the tiles each cluster touches
    spread = np.maximum(np.abs(xs[first] - center), np.abs(xs[first + size - 1] - center))
    tol = np.empty(d)
    tol[order] = np.repeat(8 * 2.0**-53 * (tile * s_t / size + spread + s_t + lam), size) / unit
    return tol + 2 * np.spacing(np.abs(x_ref).astype(dtype)).astype(np.float64)


@pytest.mark.parametrize("name", ["gaussian", "exponential", "shifted"])
@pytest.mark.parametrize("lam", [1e-2, 1.0])
def test_accuracy_does_not_grow_with_d(name, lam):
    """Many tiles (313 of 64): sums never round relative to prefixes of the whole row.

    Before the per-tile references and the compensated offsets, errors near the median
    reached ``10**3`` units of ``2**-53 max |w - c|`` here (prefix differences of size ``d``).
    """
    import wsprox

    rng = np.random.default_rng(11)
    d, tile = 20_000, 64
    w = {
        "gaussian": rng.standard_normal(d),
        "exponential": rng.exponential(size=d) ** 3,  # heavy tail, median far from the mean
        "shifted": 1e4 + rng.standard_normal(d),
    }[name]
    x = prox_prototype(w, lam, tile=tile, chunk=8)
    x_ref, labels_ref = wsprox.prox(w, lam, backend="numba", return_clusters=True)  # block-accurate (ulps)
    err = np.abs(x - x_ref)
    tol = tile_tolerance(w, x_ref, labels_ref, lam, tile, np.float64)
    assert np.all(err <= tol), f"max error/tolerance {np.max(err / tol):.3g}"
    assert labels_ref.max() + 1 < d  # some pooling: not vacuous


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("lam", [1e-2, 100.0])
@pytest.mark.parametrize("tile, chunk", [(64, 8), (32, 1024)])
def test_accuracy_bound_on_hard_families(name, lam, tile, chunk):
    """The promised bound (constant 8) on every hard family, chunked and sequential tile stages.

    On this machine the worst ratio error / tolerance over these cases was 0.4 (sorted rows,
    tiles of 32), so a summation depth beyond the documented one would show here.
    """
    import wsprox

    d = 20_000
    w = make_family(name, d, lam, np.random.default_rng(3))
    x = prox_prototype(w, lam, tile=tile, chunk=chunk)
    x_ref, labels_ref = wsprox.prox(w, lam, backend="numba", return_clusters=True)
    tol = tile_tolerance(w, x_ref, labels_ref, lam, tile, np.float64)
    err = np.abs(x - x_ref)
    assert np.all(err <= tol), f"max error/tolerance {np.max(err / tol):.3g}"


# ------------------------------------------------------------- short blocks: direct sums
def _singleton_rows(rng, d=3000):
    """Rows whose prox at tiny strengths keeps every weight a cluster of its own."""
    return {
        "gaussian": rng.standard_normal(d),
        "heavy": rng.standard_t(1.5, d),
        # the reproducer: spread 3000 per 1024-element tile, lam = 1e-11 * ptp
        "exponential_steps": rng.permutation(np.cumsum(rng.exponential(1.0, d))),
    }


@pytest.mark.parametrize("tile", [64, 1024])
@pytest.mark.parametrize("lam", [1e-12, 1e-10, 1e-8])
def test_singletons_are_bit_identical_to_numba(tile, lam):
    """A block of one weight gets ``x + v`` computed as on the CPU.

    Before the direct sums, its value came from the tile sums (error about ``2**-53 TILE
    s_T``): these rows failed the certificate by factors up to 3749 (exponential steps,
    tiles of 64, lam = 1e-12 ptp) and 2.1 (Gaussian, tiles of 1024, lam = 1e-12 ptp).
    """
    import wsprox

    for name, w in _singleton_rows(np.random.default_rng(5)).items():
        x, labels = prox_prototype(w, lam * np.ptp(w), tile=tile, return_clusters=True)
        assert labels.max() + 1 == w.size, name  # all singletons: the case this test is about
        np.testing.assert_array_equal(x, wsprox.prox(w, lam * np.ptp(w), backend="numba"), err_msg=name)
        assert wsprox.certify(w, x, lam * np.ptp(w)), name


@pytest.mark.parametrize("size", [2, 4, 16])
def test_short_blocks_summed_directly(size):
    """Blocks of at most ``local`` weights get the CPU's block-relative sums, not the tile sums'.

    Rows of near-tied groups of ``size`` weights in 1024-element tiles whose values span
    about 1000: with the direct sums the result equals numba's; with ``local=0`` (every
    block of distinct weights from the tile sums) blocks of two were up to 2439 ulps off
    (near the smallest weights, values below 1), so the comparison bites.
    """
    import wsprox

    rng = np.random.default_rng(size)
    d = 3000
    w = np.repeat(np.cumsum(rng.exponential(1.0, d // size)), size)
    w = rng.permutation(w + 1e-12 * rng.standard_normal(w.size))
    lam = 1e-11 * np.ptp(w)
    x_ref, labels_ref = wsprox.prox(w, lam, backend="numba", return_clusters=True)
    sizes = np.bincount(labels_ref)
    assert sizes.max() <= size and np.mean(sizes > 1) > 0.5  # mostly pooled short blocks
    x, labels = prox_prototype(w, lam, return_clusters=True)
    ulp = np.spacing(np.abs(x_ref))
    assert np.all(np.abs(x - x_ref) <= 2 * ulp), np.max(np.abs(x - x_ref) / ulp)
    np.testing.assert_array_equal(labels, labels_ref)
    assert wsprox.certify(w, x, lam)
    if size == 2:
        x_tiles = prox_prototype(w, lam, local=0)
        assert np.max(np.abs(x_tiles - x_ref) / ulp) > 4


@pytest.mark.parametrize("local", [0, 16])
@pytest.mark.parametrize("size", [3, 100, 700])
def test_blocks_of_equal_weights_are_exact(size, local):
    """A block of equal weights ``x`` gets ``x + v`` (no sum at all), whatever its length.

    Groups of ties span tile boundaries; lam large enough that no rounding of the tile
    sums can split a group (at lam = 1e-12 here, values near 1000, the pooling tests'
    rounding is above the velocity differences and a group can come out in pieces whose
    values differ by an ulp, within the documented bound).
    """
    import wsprox

    rng = np.random.default_rng(size)
    d = 3000
    w = rng.permutation(np.repeat(1e3 * rng.standard_normal(d // size), size))
    for lam in (1e-6, 1e-2):
        x, labels = prox_prototype(w, lam, local=local, return_clusters=True)
        x_ref, labels_ref = wsprox.prox(w, lam, backend="numba", return_clusters=True)
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(labels, labels_ref)


def test_local_is_checked():
    with pytest.raises(ValueError, match="local must be >= 0"):
        prox_rows(np.zeros((1, 3)), 1.0, local=-1)
