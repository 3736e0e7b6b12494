"""``python -m diffbook``: the command line of :mod:`diffbook.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
