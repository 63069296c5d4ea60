"""`python -m nowcast COMMAND ...`: the same as the `nowcast` command (nowcast/cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
