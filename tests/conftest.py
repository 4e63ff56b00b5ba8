"""Shared pytest configuration: markers, hypothesis profiles, per-test random streams."""

import os
import zlib

import numpy as np
from hypothesis import settings

# default (a plain pytest run): fresh random examples each run, failures remembered in .hypothesis/.
# ci (every tox env unless HYPOTHESIS_PROFILE says otherwise) and nojit (the coverage env): the same
# examples on every run and no example database, so a CI result is reproducible and writes nothing.
settings.register_profile("default", deadline=None, max_examples=60)
settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True, database=None)
settings.register_profile("nojit", deadline=None, max_examples=10, derandomize=True, database=None)
settings.load_profile(
    "nojit" if os.environ.get("NUMBA_DISABLE_JIT") == "1" else os.environ.get("HYPOTHESIS_PROFILE", "default")
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: large sizes; deselected in the pure-Python coverage env")
    config.addinivalue_line("markers", "gpu: needs a real CUDA GPU (run on the GPU machine)")


def pytest_runtest_setup(item):
    """Restart a test module's ``RNG`` generator for every test, seeded by the test's id.

    The draws of a test then do not depend on which tests ran before it in the same process
    (pytest-xdist distributes them differently from run to run), so a failure reproduces
    when the test is run alone.
    """
    module = getattr(item, "module", None)
    if isinstance(getattr(module, "RNG", None), np.random.Generator):
        module.RNG = np.random.default_rng(zlib.crc32(item.nodeid.encode()))
