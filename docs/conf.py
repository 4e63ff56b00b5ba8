"""Sphinx configuration of the wsprox documentation.

Build (warnings are errors)::

    sphinx-build -W -b html docs docs/_build/html

Check the examples in the pages (``>>>`` blocks)::

    sphinx-build -W -b doctest docs docs/_build/doctest

No network access is needed: no intersphinx, MathJax is loaded by the reader's browser.
No GPU is needed: the CUDA modules are never imported by the pages.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import wsprox  # noqa: E402

project = "wsprox"
author = "the wsprox authors"
copyright = "the wsprox authors"
release = wsprox.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "numpydoc",
    "benchtable",
]

exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
templates_path = []
root_doc = "index"
default_role = "code"

# autodoc / numpydoc
try:  # the reference of wsprox.torch is built from a mock when torch is not installed
    import torch  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["torch"]
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# doctest: every page's >>> blocks run in one namespace per page
doctest_global_setup = "import numpy as np\nimport wsprox"

try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # the docs build without the theme too
    html_theme = "alabaster"
html_title = f"wsprox {release}"
html_static_path = []
html_show_sourcelink = False
