"""`python -m polyqueue.cli`: the `polyqueue` console script."""

from __future__ import annotations

from polyqueue.cli import main

main()
