"""The public surface: `__all__` is sorted, complete, and every name resolves."""

from __future__ import annotations

import polyqueue
from polyqueue import exceptions


def test_all_is_sorted_and_resolves() -> None:
    assert polyqueue.__all__ == sorted(polyqueue.__all__)
    for name in polyqueue.__all__:
        assert getattr(polyqueue, name) is not None


def test_every_error_is_exported() -> None:
    assert set(exceptions.__all__) <= set(polyqueue.__all__)


def test_design_names_are_public() -> None:
    for name in ("Polyqueue", "PolyqueueSettings", "JobContext", "TerminalError", "main"):
        assert name in polyqueue.__all__


def test_terminal_error_is_outside_the_library_tree() -> None:
    assert not issubclass(polyqueue.TerminalError, polyqueue.PolyqueueError)
    assert issubclass(polyqueue.TerminalError, Exception)
