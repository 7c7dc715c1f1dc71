"""``python -m luaimport``: the command line (see :mod:`luaimport._cli`)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
