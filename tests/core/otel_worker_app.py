"""A worker process for the cross-process tracing test: `python otel_worker_app.py SPANS_FILE`.

It traces with `OpenTelemetryTracing` and writes every ended span as one JSON line to
SPANS_FILE. Settings come from `POLYQUEUE_*` variables set by the test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from pydantic import BaseModel

import polyqueue
from polyqueue import Polyqueue
from polyqueue.contrib.opentelemetry import OpenTelemetryTracing

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan

QUEUE = "obs_cross_process"
HANDLER = "obs.cross_process"


class Echo(BaseModel):
    text: str


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The fields the test compares, with ids in W3C hex."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "attributes": dict(span.attributes or {}),
        "pid": os.getpid(),
    }


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file as one JSON line, at once (with a SimpleSpanProcessor)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as sink:
            for span in spans:
                sink.write(json.dumps(span_record(span)) + "\n")
        return SpanExportResult.SUCCESS


def build_app(spans_file: Path) -> Polyqueue:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans_file)))
    app = Polyqueue(plugins=[OpenTelemetryTracing(tracer_provider=provider)])

    @app.register(HANDLER, queue=QUEUE)
    async def echo(payload: Echo) -> dict[str, Any]:
        return {"text": payload.text, "pid": os.getpid()}

    return app


if __name__ == "__main__":
    polyqueue.main(build_app(Path(sys.argv[1])), concurrency=2)
