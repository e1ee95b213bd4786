"""Logging: every line logged while a job runs carries the job's fields; JSON on request."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "JobFieldsFilter",
    "JsonFormatter",
    "configure_logging",
    "current_job_fields",
    "job_fields",
    "log_with_traceback",
    "user_frames",
]

_PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep

_JOB_FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "polyqueue_job_fields", default=None
)
FIELDS = ("job_id", "handler", "queue", "attempt", "worker_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(job)s"


@contextlib.contextmanager
def job_fields(**fields: Any) -> Iterator[None]:
    """Attach `fields` (job_id, handler, queue, attempt, worker_id) to every log record."""
    token = _JOB_FIELDS.set(fields)
    try:
        yield
    finally:
        _JOB_FIELDS.reset(token)


def current_job_fields() -> dict[str, Any]:
    """The fields of the job this task runs, if any (for other loggers, e.g. structlog)."""
    return dict(_JOB_FIELDS.get() or {})


class JobFieldsFilter(logging.Filter):
    """Copies the current job's fields onto each record (and a ` [job=...]` text suffix)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        fields = _JOB_FIELDS.get() or {}
        for key in FIELDS:
            setattr(record, key, fields.get(key))
        record.job = (
            " [" + " ".join(f"{k}={fields[k]}" for k in FIELDS if k in fields) + "]"
            if fields
            else ""
        )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def log_with_traceback(
    logger: logging.Logger, level: int, traceback: str | None, message: str, *args: object
) -> None:
    """Log `message % args` with `traceback` (text, e.g. a stored one) where a formatter puts
    an exception's: after the message as text, in the `exception` field as JSON."""
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, __file__, 0, message, args, None)
    record.exc_text = traceback.rstrip("\n") if traceback else None
    logger.handle(record)


def user_frames(traceback: str | None) -> str | None:
    """A formatted traceback without the frames of Polyqueue's own modules (the executor,
    middleware...), which say nothing about why the handler failed."""
    if not traceback:
        return traceback
    kept: list[str] = []
    skipping = False
    for line in traceback.splitlines():
        if line.startswith('  File "'):
            skipping = line[len('  File "') :].startswith(_PACKAGE_DIR)
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Log to stderr in `text` or `json`, with job fields on every record."""
    handler = logging.StreamHandler()
    handler.addFilter(JobFieldsFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
