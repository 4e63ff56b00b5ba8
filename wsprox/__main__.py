"""``python -m wsprox``: the same as the ``wsprox`` command (see :mod:`wsprox.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
