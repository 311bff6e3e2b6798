"""`python -m tfdlgm ...` is the `tfdlgm` command (`tfdlgm.cli`)."""

import sys

from tfdlgm.cli import main

if __name__ == "__main__":
    sys.exit(main())
