"""``wsprox._machine``: the machine description that every results file records."""

import builtins
import os
import platform
import stat
import sys

import numpy as np
import pytest

import wsprox
from wsprox import _machine


def test_machine_info_fields():
    info = _machine.machine_info()
    assert set(info) == {"cpu", "cores", "usable_cores", "platform", "versions", "gpu"}
    assert info["cpu"] and info["platform"] == platform.platform()
    assert 1 <= info["usable_cores"] <= info["cores"] == os.cpu_count()
    versions = info["versions"]
    assert versions["numpy"] == np.__version__ and versions["wsprox"] == wsprox.__version__
    assert versions["python"] == platform.python_version()
    assert set(_machine.LIBRARIES) <= set(versions)
    assert versions["numba"]  # a dependency: always installed


def test_cpu_model_without_proc_cpuinfo(monkeypatch):
    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    assert _machine.cpu_model() == (platform.processor() or platform.machine())


def _fake_nvidia_smi(directory, body):
    script = directory / "nvidia-smi"
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(directory)


@pytest.mark.skipif(os.name != "posix", reason="the fake nvidia-smi is a script with a #! line")
def test_gpu_name_from_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert _machine.gpu_name() is None  # no nvidia-smi
    two = _fake_nvidia_smi(tmp_path, "print('NVIDIA H200\\n\\nNVIDIA H100 80GB HBM3')")
    monkeypatch.setenv("PATH", two)
    assert _machine.gpu_name() == "NVIDIA H200, NVIDIA H100 80GB HBM3"
    failing = tmp_path / "failing"
    failing.mkdir()
    monkeypatch.setenv("PATH", _fake_nvidia_smi(failing, "import sys; print('NVIDIA H200'); sys.exit(9)"))
    assert _machine.gpu_name() is None  # a failing nvidia-smi (no driver) names no GPU
