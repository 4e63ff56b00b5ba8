"""Shared pytest configuration: markers and hypothesis profiles."""

import os

from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=60)
settings.register_profile("ci", deadline=None, max_examples=30)
settings.register_profile("nojit", deadline=None, max_examples=10)
settings.load_profile(
    "nojit" if os.environ.get("NUMBA_DISABLE_JIT") == "1" else os.environ.get("HYPOTHESIS_PROFILE", "default")
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: large sizes; deselected in the pure-Python coverage env")
    config.addinivalue_line("markers", "gpu: needs a real CUDA GPU (run on the GPU machine)")
