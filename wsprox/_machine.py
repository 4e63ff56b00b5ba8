"""A description of the machine a measurement ran on: CPU, cores, platform, library versions, GPU.

``wsprox compare --json``, ``asv_bench/bench_numba.py --json`` (``machine_info``) and the
examples' JSON files record it, so that a time can be traced to the machine that made it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import numpy as np

import wsprox

__all__ = ["cpu_model", "gpu_name", "machine_info"]

#: Libraries whose versions :func:`machine_info` reports (import name; None where not installed).
LIBRARIES = ("numba", "scipy", "sklearn", "cvxpy", "torch", "torchsort", "cupy")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one, else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The names of the NVIDIA GPUs that ``nvidia-smi`` lists, comma separated; None without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return ", ".join(names) if out.returncode == 0 and names else None


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is not None:
        return getattr(mod, "__version__", None)
    try:  # without importing it (torch takes seconds)
        from importlib.metadata import version

        return version({"sklearn": "scikit-learn"}.get(module, module))
    except Exception:
        return None


def machine_info() -> dict:
    """The machine and software a measurement runs on.

    Returns
    -------
    dict
        ``cpu`` (model name), ``cores`` (:func:`os.cpu_count`), ``usable_cores`` (the CPUs
        this process may run on), ``platform``, ``versions`` (Python, numpy, wsprox and the
        :data:`LIBRARIES`, None where not installed) and ``gpu`` (:func:`gpu_name`).
    """
    versions = {"python": platform.python_version(), "numpy": np.__version__, "wsprox": wsprox.__version__}
    versions |= {module: _version(module) for module in LIBRARIES}
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "versions": versions,
        "gpu": gpu_name(),
    }
