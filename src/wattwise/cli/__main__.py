"""``python -m wattwise.cli ...``: the ``wattwise`` command (as ``python -m wattwise``)."""

from __future__ import annotations

import sys

from wattwise.cli import main

if __name__ == "__main__":
    sys.exit(main())
