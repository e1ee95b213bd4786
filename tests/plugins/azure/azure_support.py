"""Helpers of the Azure tests: a worker for a block, stopped gracefully."""

from __future__ import annotations

import functools

from polyqueue.testing.helpers import running_worker as _running_worker

running_worker = functools.partial(_running_worker, graceful=True)
"""A worker for the block, stopped gracefully (in-flight jobs finish)."""
