"""The two sort engines of the numba backend (radix, numpy) and how one is chosen.

Both sort the same distinct packed keys, so their results must agree bit for bit on
every input: values, labels, dtypes, layouts and batch shapes, including the batch sizes
that go through the thread pools.
"""

import multiprocessing
import os
import warnings

import numpy as np
import pytest
from reference import FAMILIES, family, prox_reference

import wsprox
from wsprox.solvers import _sort_engine, numba_backend

RNG = np.random.default_rng(11)


def solve_with(engine, monkeypatch, w, lam, **kwargs):
    monkeypatch.setenv(_sort_engine.ENV_VAR, engine)
    return wsprox.prox(w, lam, backend="numba", **kwargs)


def inputs():
    """(name, array, axis): hard and easy rows, single vectors and batches of every path."""
    d = 500
    ramp = np.concatenate([np.zeros(d // 2), np.arange(d // 2, dtype=np.float64)])
    yield "gauss-1", RNG.standard_normal(1), None
    yield "gauss-2", RNG.standard_normal(2), None
    yield "gauss-long", RNG.standard_normal(70_000), None  # one row longer than a key block
    yield "ulps", 1.0 + np.finfo(np.float64).eps * RNG.integers(0, 40, 3000), None  # float64 tie runs
    yield "ties", RNG.integers(-4, 4, 2000).astype(np.float64), None
    yield "signed-zeros", np.where(RNG.random(300) < 0.5, -0.0, 0.0), None
    yield "sorted", np.arange(1000.0), None
    yield "reversed", np.arange(1000.0)[::-1].copy(), None
    yield "ramp", ramp, None
    yield "heavy", RNG.standard_cauchy(5000) * 1e6, None
    ulps = 1.0 + np.finfo(np.float64).eps * np.arange(1000.0)
    yield "ulps-descending", ulps[::-1].copy(), None  # one coarse run in reverse: insertion gives up
    yield "ulps-few-swaps", np.where(np.arange(1000) % 50 == 0, ulps[::-1], ulps), None
    yield "ties-short-rows", RNG.integers(-2, 3, (300, 200)).astype(np.float64), 1  # narrow keys, long equal runs
    yield "near-ties-short-rows", 1.0 + 1e-6 * RNG.standard_normal((300, 600)), 1  # narrow, many coarse ties
    outliers = RNG.standard_normal((300, 500))
    outliers[np.arange(300), RNG.integers(0, 500, 300)] = 1e6  # the rest shares few coarse keys
    yield "outlier-short-rows", outliers, 1  # narrow keys give up: the radix sort again
    narrow = _sort_engine.NARROW_MAX
    yield "narrow-limit", RNG.standard_normal((80, narrow)), 1  # the longest rows on narrow keys
    yield "past-narrow-limit", RNG.standard_normal((80, narrow + 1)), 1
    yield "batch-small", RNG.standard_normal((7, 33)), 1  # serial path
    yield "batch-threads", RNG.standard_normal((300, 700)), 1  # thread pool, several key blocks
    yield "batch-wide", RNG.standard_normal((3, 40_000)), 1  # thread pool, one row per key block
    yield "batch-axis0", RNG.standard_normal((800, 90)), 0  # strided rows
    yield "batch-3d", RNG.standard_normal((20, 30, 200)), -2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engines_agree_bitwise(monkeypatch, dtype):
    for k, (name, w, axis) in enumerate(inputs()):
        w = w.astype(dtype)
        l1 = 0.05 * (k % 2)
        lam = {"heavy": 1e5, "near-ties-short-rows": 1e-6}.get(name, 0.3)
        xr, lr = solve_with("radix", monkeypatch, w, lam, l1=l1, axis=axis, return_clusters=True)
        xn, ln = solve_with("numpy", monkeypatch, w, lam, l1=l1, axis=axis, return_clusters=True)
        assert xr.tobytes() == xn.tobytes(), name
        np.testing.assert_array_equal(lr, ln, err_msg=name)
        for engine in _sort_engine.ENGINES:  # without labels: other compiled loops
            x = solve_with(engine, monkeypatch, w, lam, l1=l1, axis=axis)
            assert x.tobytes() == xr.tobytes(), (name, engine)


def family_batch(n, d, last):
    """``(w, lam)``: ``n`` rows of length ``d``, the last one ``last``, and the batch's strength.

    ``last="exact"``: integer rows with ``lam = d - 1``, whose float64 sums are exact (so is
    the partition; the means still round). Otherwise the rows cycle through the hard families, lam = 0.5, and the
    last row is sorted or Gaussian: sorted and reversed rows sit among unsorted ones, first
    and last, so an engine that takes a block of rows for sorted because one row is shows.
    """
    if last == "exact":
        return RNG.integers(-3 * d, 3 * d + 1, (n, d)).astype(np.float64), float(d - 1)
    names = [name for name in FAMILIES if name != "float32_overflow"]
    rows = [family(names[r % len(names)], d, r)[0] for r in range(n - 1)]
    rows.append({"sorted": np.arange(d, dtype=np.float64), "gaussian": RNG.standard_normal(d)}[last])
    return np.stack(rows), 0.5


@pytest.mark.parametrize("engine", _sort_engine.ENGINES)
@pytest.mark.parametrize(
    "n, d, last",
    [
        (6, 2000, "sorted"),
        (6, 2000, "gaussian"),
        (40, 2000, "sorted"),
        (300, 600, "sorted"),
        (3, 40_000, "sorted"),
        (40, 2000, "exact"),
        (300, 200, "exact"),
    ],
)
def test_each_engine_matches_reference_on_family_batches(monkeypatch, engine, n, d, last):
    """Batches of hard rows, serial and thread-pool paths, short and long rows, against the plain PAVA."""
    w, lam = family_batch(n, d, last)
    x, labels = solve_with(engine, monkeypatch, w, lam, axis=1, return_clusters=True)
    expected, expected_labels = prox_reference(w, lam)
    scale = np.abs(w).max(axis=1, keepdims=True) + lam
    assert np.all(np.abs(x - expected) <= 1e-12 * scale)
    if last == "exact":
        np.testing.assert_array_equal(labels, expected_labels)  # exact sums: the same partition


@pytest.mark.parametrize("engine", _sort_engine.ENGINES)
def test_each_engine_matches_reference_pava(monkeypatch, engine):
    w = RNG.standard_normal((300, 257))  # thread-pool path
    x, labels = solve_with(engine, monkeypatch, w, 0.7, l1=0.1, axis=1, return_clusters=True)
    expected, expected_labels = prox_reference(w, 0.7, 0.1)
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, expected_labels)


def test_numpy_engine_shares_key_blocks_among_threads(monkeypatch):
    import threading

    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: the backend never runs chunks in parallel")
    submitted, solved = [], []
    real_executor, real_solve = numba_backend._executor, numba_backend._solve_numpy_sort

    def counting_executor(workers):
        pool = real_executor(workers)

        class Counting:
            def submit(self, fn, *args):
                submitted.append(fn)
                return pool.submit(fn, *args)

        return Counting()

    def recording_solve(*args):
        solved.append((args[6], args[7], threading.current_thread().name))
        return real_solve(*args)

    monkeypatch.setattr(numba_backend, "_executor", counting_executor)
    monkeypatch.setattr(numba_backend, "_solve_numpy_sort", recording_solve)
    w = RNG.standard_normal((300, 700))
    x = solve_with("numpy", monkeypatch, w, 0.2, axis=1)
    assert submitted
    rows_per_block = min(numba_backend.KEY_BLOCK_ELEMENTS // 700, -(-300 // (4 * numba.get_num_threads())))
    assert sorted(a for a, _, _ in solved) == list(range(0, 300, rows_per_block))  # each block once
    assert all(b == min(a + rows_per_block, 300) for a, b, _ in solved)
    monkeypatch.setattr(numba_backend, "_solve_numpy_sort", real_solve)
    assert x.tobytes() == solve_with("radix", monkeypatch, w, 0.2, axis=1).tobytes()


@pytest.mark.parametrize("engine", _sort_engine.ENGINES)
def test_a_busy_pool_does_not_hold_up_a_call(monkeypatch, engine):
    """While the pool's only thread is busy (another caller's batch), a batch is solved by the
    calling thread alone, and the job it queued is cancelled instead of waited for."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    busy = ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    blocker = busy.submit(release.wait, 120)
    monkeypatch.setattr(numba_backend, "_executor", lambda workers: busy)
    monkeypatch.setattr(numba_backend, "_thread_count", lambda: 2)
    w = RNG.standard_normal((200, 700))
    monkeypatch.setenv(_sort_engine.ENV_VAR, engine)
    result = {}
    caller = threading.Thread(target=lambda: result.setdefault("x", wsprox.prox(w, 0.2, axis=1)))
    try:
        caller.start()
        caller.join(timeout=60)
        assert not caller.is_alive(), "the call waited for the busy pool"
        assert not blocker.done()
    finally:
        release.set()
        caller.join(timeout=60)
        busy.shutdown(wait=True)
    serial = np.vstack([numba_backend.solve(w[r : r + 1], 0.2, 0.0, False)[0] for r in range(200)])
    assert result["x"].tobytes() == serial.tobytes()


def test_thread_count_without_a_threading_layer(monkeypatch):
    """numba.get_num_threads raises ValueError when the threading layer asked for cannot be
    loaded (NUMBA_THREADING_LAYER=tbb without TBB); the backend runs none of numba's parallel
    code and falls back to NUMBA_NUM_THREADS."""
    import numba

    def no_layer():
        raise ValueError("No threading layer could be loaded.")

    w = RNG.standard_normal((300, 700))
    expected = wsprox.prox(w, 0.2, axis=1)
    monkeypatch.setattr(numba, "get_num_threads", no_layer)
    assert numba_backend._thread_count() == numba.config.NUMBA_NUM_THREADS
    assert wsprox.prox(w, 0.2, axis=1).tobytes() == expected.tobytes()


def test_pool_errors_reach_the_caller_after_every_block_finished(monkeypatch):
    import threading
    import time

    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: the backend never runs chunks in parallel")
    started, finished = [], []

    def failing_side(failing):
        def solve_block(*args):
            in_pool = threading.current_thread() is not threading.main_thread()
            side = "pool" if in_pool else "caller"
            started.append(side)
            time.sleep(0.05)
            if side == failing:
                raise MemoryError(f"{failing} failed")
            time.sleep(0.3)
            finished.append((side, time.perf_counter()))

        return solve_block

    w = RNG.standard_normal((3000, 700))  # 33 key blocks: more than the threads take before one fails
    for failing, other in (("pool", "caller"), ("caller", "pool")):
        started.clear()
        finished.clear()
        monkeypatch.setattr(numba_backend, "_solve_numpy_sort", failing_side(failing))
        with pytest.raises(MemoryError, match=f"{failing} failed"):
            solve_with("numpy", monkeypatch, w, 0.2, axis=1)
        raised = time.perf_counter()
        assert started.count(other) == len(finished)  # every block of the other side ran to its end ...
        assert all(t <= raised for _, t in finished)  # ... before the error reached the caller
        assert len(started) < 10  # and no new blocks were started after the failure


@pytest.mark.parametrize("engine", _sort_engine.ENGINES)
def test_each_engine_respects_thread_count(monkeypatch, engine):
    import numba

    w = RNG.standard_normal((200, 600))
    expected = solve_with(engine, monkeypatch, w, 0.2, axis=1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = solve_with(engine, monkeypatch, w, 0.2, axis=1)
    finally:
        numba.set_num_threads(before)
    assert serial.tobytes() == expected.tobytes()


def test_forced_engine_and_bad_value(monkeypatch):
    for engine in _sort_engine.ENGINES:
        monkeypatch.setenv(_sort_engine.ENV_VAR, engine.upper())
        assert _sort_engine.sort_engine(10) == engine
    monkeypatch.setenv(_sort_engine.ENV_VAR, "quick")
    with pytest.raises(ValueError, match="WSPROX_SORT='quick'"):
        wsprox.prox(np.arange(5.0), 1.0)


def test_calibration_picks_a_valid_engine_per_size_class(monkeypatch):
    monkeypatch.setenv(_sort_engine.ENV_VAR, "auto")
    monkeypatch.setattr(_sort_engine, "_chosen", {})
    shapes = {"narrow": (4, 100), "short": (2, 2000), "long": (1, 5000)}
    monkeypatch.setattr(_sort_engine, "CALIBRATION_SHAPES", shapes)
    narrow = _sort_engine.NARROW_MAX
    chosen = {
        name: _sort_engine.sort_engine(d) for name, d in (("narrow", narrow), ("short", narrow + 1), ("long", 5000))
    }
    assert set(chosen.values()) <= set(_sort_engine.ENGINES)
    assert _sort_engine.calibration() == chosen
    assert _sort_engine.size_class(narrow) == "narrow"
    assert _sort_engine.size_class(_sort_engine.SMALL_ROW) == "short"
    assert _sort_engine.size_class(_sort_engine.SMALL_ROW + 1) == "long"


def _child_solves(queue):
    w = np.random.default_rng(0).standard_normal((300, 700))
    queue.put(wsprox.prox(w, 0.2, axis=1).tobytes())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("engine", _sort_engine.ENGINES)
def test_thread_pool_survives_fork(monkeypatch, engine):
    """A batch solved in a child forked after the parent solved one (a multiprocessing
    pool, a DataLoader worker): the pool is made anew in the child, and no OpenMP runtime,
    which GNU's cannot survive a fork, is involved."""
    monkeypatch.setenv(_sort_engine.ENV_VAR, engine)
    w = np.random.default_rng(0).standard_normal((300, 700))
    expected = wsprox.prox(w, 0.2, axis=1).tobytes()  # the parent's pool now exists
    assert numba_backend._pool is not None
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_solves, args=(queue,))
    child.start()
    try:
        result = queue.get(timeout=120)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert result == expected


_CONCURRENT_CALLERS = """
import threading
import numpy as np, numba, wsprox
rng = np.random.default_rng(0)
batches = [rng.standard_normal((64, 3000)) for _ in range(4)]
expected = [wsprox.prox(w, 0.3, axis=1).tobytes() for w in batches]
results, start = {}, threading.Barrier(4)
def caller(k):
    start.wait()  # all four start together
    results[k] = [wsprox.prox(batches[k], 0.3, axis=1).tobytes() for _ in range(15)]
threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert all(r == [expected[k]] * 15 for k, r in results.items()) and len(results) == 4
assert numba.threading_layer() == "workqueue"  # started (by numba.get_num_threads), never entered twice
print("ok")
"""


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing runs in parallel without the JIT")
@pytest.mark.parametrize("engine", _sort_engine.ENGINES)
def test_concurrent_calls_from_threads_with_the_workqueue_layer(engine):
    """Batches run on the backend's own thread pool, never in numba's parallel loops, whose
    ``workqueue`` layer (numba's fallback without OpenMP or TBB) aborts the process when two
    threads enter it at once: concurrent callers get the right results."""
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    env[_sort_engine.ENV_VAR] = engine
    done = subprocess.run(
        [sys.executable, "-c", _CONCURRENT_CALLERS], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.stdout, done.stderr[-2000:])


def narrow_sort(row):
    """The narrow-key path alone: ``(xs, perm, done)`` after numpy sorts the narrow keys."""
    from wsprox.solvers._numba_kernels import unpack_narrow_row
    from wsprox.solvers._sorting import pack_narrow

    d = row.size
    keys = np.empty(d, np.uint32)
    pack_narrow(row, keys)
    keys.sort()
    perm = np.empty(d, np.uint32)
    xs, done = unpack_narrow_row(row, keys, np.empty(d, np.uint64), perm)
    return np.asarray(xs), perm, done


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_narrow_keys_order_exactly(dtype):
    """Narrow keys give the permutation of a stable sort, or give up honestly."""
    eps = np.finfo(dtype).eps
    embedded = RNG.standard_normal(1000)
    embedded[100:130] = (1.0 + eps * np.arange(30.0))[::-1]  # one coarse run in reverse: 435 moves
    rows = [
        RNG.standard_normal(1000),
        embedded,
        np.where(RNG.random(777) < 0.5, -0.0, 0.0),
        RNG.integers(-3, 3, 1024).astype(float),  # long runs of equal values: nothing moves
    ]
    for row in rows:
        row = row.astype(dtype)
        xs, perm, done = narrow_sort(row)
        assert done
        order = np.lexsort((np.arange(row.size), ~np.signbit(row), row))
        np.testing.assert_array_equal(perm, order)
        assert xs.tobytes() == row[order].tobytes()
    hopeless = [
        # an outlier stretches the range: the rest is one coarse run, in reverse (~d^2/2 moves)
        np.concatenate([[1e6], (1.0 + eps * np.arange(999.0))[::-1]]),
        # the same in random order (~d^2/4 moves)
        np.concatenate([1.0 + 30 * eps * RNG.standard_normal(511), [-1e6]]),
        # signed zeros mixed with other values share one coarse key (-0.0 sorts first)
        np.where(np.arange(600) == 7, 5.0, np.where(RNG.random(600) < 0.5, -0.0, 0.0)),
    ]
    for row in hopeless:
        assert not narrow_sort(row.astype(dtype))[2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_narrow_keys_on_extreme_ranges(monkeypatch, dtype):
    """Rows whose range, or its inverse, overflows: both engines agree and match the reference."""
    big, tiny = np.finfo(dtype).max, np.finfo(dtype).smallest_subnormal
    rows = np.stack(
        [
            np.concatenate([[big, -big], RNG.standard_normal(98)]),  # the range overflows
            tiny * RNG.integers(-5, 5, 100),  # the inverse of the range overflows
            np.concatenate([[1e4], RNG.standard_normal(99)]),  # an outlier: long coarse runs
            np.full(100, 3.0),  # no range at all
        ]
    ).astype(dtype)
    from wsprox.solvers._sorting import index_bits, pack_narrow

    keys = np.empty(100, np.uint32)
    for row in rows[:2]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no inf * 0 (NaN) and no overflowing scale, also without the JIT
            pack_narrow(row, keys)
        if dtype == np.float64:  # float32 ranges fit float64: mapped linearly
            np.testing.assert_array_equal(keys >> index_bits(100), 0)  # one coarse key: the row falls back
    x_numpy = solve_with("numpy", monkeypatch, rows, 0.5, axis=1)
    x_radix = solve_with("radix", monkeypatch, rows, 0.5, axis=1)
    assert x_numpy.tobytes() == x_radix.tobytes()
    for row, x in zip(rows[1:], x_numpy[1:]):  # the first is beyond float64 references; atol: lam rounding
        np.testing.assert_allclose(x, prox_reference(row.astype(np.float64), 0.5)[0], rtol=1e-6, atol=1e-15)


def test_pool_grows_and_retires_the_smaller_one(monkeypatch):
    monkeypatch.setattr(numba_backend, "_pool", None)
    small = numba_backend._executor(1)
    assert numba_backend._executor(1) is small
    large = numba_backend._executor(3)
    assert large is not small and numba_backend._executor(2) is large
    with pytest.raises(RuntimeError):  # the retired pool takes no more work
        small.submit(int)
    assert large.submit(int, "7").result() == 7
    large.shutdown()
