"""``python -m pytest_connleak watch ...``: the ``connleak`` console script without its script."""

from __future__ import annotations

import sys

from ._runtime.watch import main

if __name__ == "__main__":
    sys.exit(main())
