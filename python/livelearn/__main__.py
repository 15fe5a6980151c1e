"""``python -m livelearn``: the same as the ``livelearn`` command (see :mod:`livelearn.cli`)."""

from __future__ import annotations

from livelearn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
