"""Test support for Polyqueue users and plugin authors: the broker contract suite and fixtures.

- `polyqueue.testing.contract.BrokerContract`: subclass it with a `broker` fixture and every
  broker, built-in or third-party, runs the same conformance tests.
- `polyqueue.testing.RecordingBroker`: wraps a broker and records what was published and acked.
- `polyqueue.testing.helpers`: `eventually` (bounded waiting, never a timing assertion) and
  `running_worker` (a worker for an `async with` block).
- The pytest plugin (`polyqueue.testing.pytest_plugin`, loaded automatically) provides a real
  PostgreSQL per session and a fresh migrated database per test module.
"""

from __future__ import annotations

from polyqueue.testing.recording import RecordingBroker

__all__ = ["RecordingBroker"]
