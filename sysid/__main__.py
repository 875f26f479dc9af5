"""``python -m sysid``: the same command line as the ``sysid`` script."""

from __future__ import annotations

from sysid.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
