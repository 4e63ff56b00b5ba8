"""Packaging of wsprox: metadata here, the build backend in pyproject.toml."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "wsprox" / "_version.py").read_text(), re.M).group(1)

EXTRAS = {
    "cvxpy": ["cvxpy>=1.4", "clarabel>=0.5"],
    # numba-cuda 0.30 cannot compile kernels next to numpy 2.5 (np.row_stack was removed).
    "cuda": ["numba-cuda", "numpy<2.5"],
    "torch": ["torch>=2.1"],
    "test": [
        "pytest>=7",
        "pytest-xdist>=3",
        "hypothesis>=6.80",
        "scipy>=1.12",
        "cvxpy>=1.4",
        "clarabel>=0.5",
        "scikit-learn>=1.3",
        "matplotlib",
    ],
    "docs": ["sphinx>=7", "numpydoc>=1.6", "furo"],
    "bench": ["asv>=0.6", "tqdm", "matplotlib", "scipy>=1.12", "scikit-learn>=1.3"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="wsprox",
    version=VERSION,
    description="Exact, fast proximal mapping of the weight-sharing regularizer R(w) = 1/(d-1) sum_{i>j} |w_i - w_j|",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["wsprox", "wsprox.*"]),
    python_requires=">=3.10",
    install_requires=["numpy>=1.25", "numba>=0.59", "tqdm>=4.60"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["wsprox = wsprox.cli:main"]},
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Mathematics",
    ],
    zip_safe=False,
)
