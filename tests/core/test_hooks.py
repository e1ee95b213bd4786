"""The hooks: specs as documented, plugin checks, middleware, serializers, migration lines, logs.

Everything that runs jobs does so on a real PostgreSQL (the fixtures in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
import logging
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import pydantic_core
import pytest
from pydantic import BaseModel

import polyqueue
from polyqueue import (
    ConfigurationError,
    JobContext,
    JobStatus,
    Polyqueue,
    TerminalError,
    UnknownPluginError,
    events,
    hookdocs,
    hookimpl,
    hookspecs,
    middleware,
    serializers,
    sql,
)
from polyqueue.logs import JobFieldsFilter, configure_logging
from polyqueue.plugins import create_plugin_manager, serializer_classes

ROOT = Path(__file__).resolve().parents[2]
HOOKS_PAGE = ROOT / "docs" / "plugins" / "hooks.md"
EXAMPLE_PLUGIN_SRC = ROOT / "tests" / "fixtures" / "polyqueue-example-plugin" / "src"
NO_DB = "postgresql://localhost/not_used"  # for apps that are built but never started

SPECS = {doc.name: doc for doc in hookdocs.hook_docs()}


class Text(BaseModel):
    text: str


@contextlib.asynccontextmanager
async def working(app: Polyqueue):
    """Start `app` and one worker; stop both afterwards."""
    async with app:
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            worker.stop()
            await task


# -- the hookspecs --------------------------------------------------------------------------


def test_every_function_of_the_hookspec_module_is_a_polyqueue_hook() -> None:
    functions = {
        name
        for name, value in vars(hookspecs).items()
        if inspect.isfunction(value) and value.__module__ == hookspecs.__name__
    }
    assert functions == set(SPECS)
    assert all(name.startswith("polyqueue_") for name in SPECS)


def test_the_plugin_manager_knows_exactly_the_hookspecs() -> None:
    manager = create_plugin_manager()
    hooks = {name for name in vars(manager.hook) if not name.startswith("_")}
    assert hooks == set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hookspec_is_a_plain_typed_documented_def(name: str) -> None:
    function = SPECS[name].function
    assert inspect.isfunction(function)
    assert not inspect.iscoroutinefunction(function)
    assert not inspect.isasyncgenfunction(function)
    assert not inspect.isgeneratorfunction(function)
    signature = inspect.signature(function)
    for param in signature.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name}) untyped"
    assert signature.return_annotation is not inspect.Signature.empty
    namespace: dict[str, Any] = {}
    namespace.update({name: getattr(polyqueue, name) for name in polyqueue.__all__})  # lazy
    for module in (events, middleware, serializers, sql, hookspecs):
        namespace.update(vars(module))
    typing.get_type_hints(function, globalns=namespace)  # every annotation names a real type
    docstring = SPECS[name].docstring
    assert docstring, f"{name} has no docstring"
    for param in signature.parameters:
        assert f":param {param}:" in docstring, f"{name}: `{param}` is not documented"
    if signature.return_annotation != "None":
        assert ":return:" in docstring, f"{name}: the return value is not documented"


def test_every_firstresult_hook_ends_with_the_fixed_sentence() -> None:
    for doc in SPECS.values():
        if doc.options.get("firstresult"):
            assert doc.docstring.rstrip().endswith(hookdocs.FIRSTRESULT_SENTENCE), doc.name
        else:
            assert hookdocs.FIRSTRESULT_SENTENCE not in doc.docstring, doc.name


# -- the hook reference ---------------------------------------------------------------------


def test_the_hook_reference_is_generated_from_the_docstrings() -> None:
    assert HOOKS_PAGE.read_text() == hookdocs.render(), (
        "docs/plugins/hooks.md is stale: run `python -m polyqueue.hookdocs > docs/plugins/hooks.md`"
    )


def test_every_hook_has_a_heading_with_its_signature() -> None:
    """datasette's test_plugin_hooks_are_documented: walk the manager, not the generator."""
    text = HOOKS_PAGE.read_text()
    headings = set(re.findall(r"^#+ (polyqueue_\w+\(.*\))$", text, flags=re.MULTILINE))
    manager = create_plugin_manager()
    for name in SPECS:
        caller = getattr(manager.hook, name)
        assert caller.spec is not None
        assert f"{name}({', '.join(caller.spec.argnames)})" in headings, f"{name} is undocumented"


def test_the_generator_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "polyqueue.hookdocs"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == hookdocs.render()


# -- checking plugins -----------------------------------------------------------------------


class AsyncBrokers:
    @hookimpl
    async def polyqueue_register_brokers(self) -> list[type[Any]]:
        return []


class UnknownHook:
    @hookimpl
    def polyqueue_not_a_hook(self) -> None:
        pass


def test_a_coroutine_hookimpl_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="polyqueue_register_brokers with `async def`"):
        Polyqueue(database_url=NO_DB, plugins=[AsyncBrokers()])


def test_a_coroutine_hookimpl_is_refused_by_add_plugin() -> None:
    app = Polyqueue(database_url=NO_DB)
    with pytest.raises(ConfigurationError, match="async def"):
        app.add_plugin(AsyncBrokers())


def test_a_hookimpl_of_an_unknown_hook_fails_check_pending() -> None:
    with pytest.raises(ConfigurationError, match="polyqueue_not_a_hook"):
        Polyqueue(database_url=NO_DB, plugins=[UnknownHook()])
    app = Polyqueue(database_url=NO_DB)
    with pytest.raises(ConfigurationError, match="polyqueue_not_a_hook"):
        app.add_plugin(UnknownHook())


class ConfigureRecorder:
    def __init__(self) -> None:
        self.apps: list[Polyqueue] = []

    @hookimpl
    def polyqueue_configure(self, app: Polyqueue) -> None:
        assert app.broker_class is not None  # plugins are loaded before configure
        self.apps.append(app)


def test_configure_is_called_once_per_app_and_for_plugins_added_later() -> None:
    early = ConfigureRecorder()
    first = Polyqueue(database_url=NO_DB, plugins=[early])
    second = Polyqueue(database_url=NO_DB, plugins=[early])
    assert early.apps == [first, second]
    late = ConfigureRecorder()
    first.add_plugin(late)
    assert late.apps == [first]
    assert early.apps == [first, second]


def test_metrics_given_to_the_app_are_a_plugin() -> None:
    recorder = ConfigureRecorder()
    app = Polyqueue(database_url=NO_DB, metrics=recorder)
    assert app.plugin_manager.is_registered(recorder)
    assert recorder.apps == [app]


# -- middleware -----------------------------------------------------------------------------


class Tracing:
    """A plugin with both middlewares: records what it sees in a shared list."""

    def __init__(self, tag: str, seen: list[str]) -> None:
        self.tag = tag
        self.seen = seen
        self.dispatch_factories = 0
        self.enqueue_factories = 0

    @hookimpl
    def polyqueue_dispatch_middleware(self) -> middleware.DispatchMiddleware:
        self.dispatch_factories += 1

        async def around(call_next: Any, ctx: JobContext) -> Any:
            self.seen.append(f"{self.tag}>{ctx.payload.text}|{ctx.headers.get('trace')}")
            result = await call_next(ctx)
            self.seen.append(f"{self.tag}<")
            return result

        return around

    @hookimpl
    def polyqueue_enqueue_middleware(self) -> list[middleware.EnqueueMiddleware]:
        self.enqueue_factories += 1

        async def add_trace(call_next: Any, ctx: middleware.EnqueueContext) -> list[int]:
            ctx.headers.setdefault("trace", f"{self.tag}:{ctx.name}:{len(ctx.payloads)}")
            return await call_next(ctx)

        return [add_trace]


def echo_app(make_app: Any, plugins: list[object], seen: list[str], **settings: Any) -> Polyqueue:
    app = make_app(plugins=plugins, **settings)

    @app.register("echo", max_attempts=1)
    async def echo(payload: Text, ctx: JobContext) -> dict[str, Any]:
        seen.append(f"handler:{ctx.headers.get('trace')}")
        return {"text": payload.text}

    return app


async def test_dispatch_middleware_runs_in_registration_order_around_the_handler(
    make_app: Any,
) -> None:
    seen: list[str] = []
    outer, inner = Tracing("a", seen), Tracing("b", seen)
    app = echo_app(make_app, [outer, inner], seen)
    async with working(app):
        job = await app.wait_for(await app.enqueue("echo", Text(text="hi")), timeout=30)
    assert job.status is JobStatus.SUCCEEDED
    # the first registered is outermost, for dispatch and enqueue alike (its header wins)
    assert seen == ["a>hi|a:echo:1", "b>hi|a:echo:1", "handler:a:echo:1", "b<", "a<"]


async def test_enqueue_middleware_headers_reach_the_job_context(make_app: Any) -> None:
    seen: list[str] = []
    app = echo_app(make_app, [Tracing("a", seen)], seen)
    async with working(app):
        ids = await app.enqueue_many("echo", [Text(text="x"), Text(text="y")])
        jobs = [await app.wait_for(job_id, timeout=30) for job_id in ids]
        given = await app.enqueue("echo", Text(text="z"), headers={"trace": "caller"})
        await app.wait_for(given, timeout=30)
    assert [job.headers for job in jobs] == [{"trace": "a:echo:2"}] * 2
    assert seen.count("handler:a:echo:2") == 2
    assert "handler:caller" in seen  # a middleware sees (and here keeps) the caller's headers


async def test_middleware_factories_are_called_once_per_start_not_per_job(make_app: Any) -> None:
    seen: list[str] = []
    plugin = Tracing("a", seen)
    app = echo_app(make_app, [plugin], seen)
    async with working(app):
        ids = [await app.enqueue("echo", Text(text=str(i))) for i in range(3)]
        for job_id in ids:
            await app.wait_for(job_id, timeout=30)
        assert (plugin.enqueue_factories, plugin.dispatch_factories) == (1, 1)
        app.worker()  # a second worker builds its own chain
        assert plugin.dispatch_factories == 2
    assert seen.count("a<") == 3


class Rewriting:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    @hookimpl
    def polyqueue_dispatch_middleware(self) -> middleware.DispatchMiddleware:
        async def rewrite(call_next: Any, ctx: JobContext) -> Any:
            if self.fail:
                raise ValueError(f"middleware refused job {ctx.job_id}")
            result = await call_next(ctx)
            return {**result, "rewritten": True}

        return rewrite


async def test_dispatch_middleware_can_change_the_result(make_app: Any) -> None:
    seen: list[str] = []
    app = echo_app(make_app, [Rewriting()], seen)
    async with working(app):
        job_id = await app.enqueue("echo", Text(text="hi"))
        await app.wait_for(job_id, timeout=30)
        assert await app.get_job_result(job_id) == {"text": "hi", "rewritten": True}


async def test_an_exception_in_middleware_fails_the_job_like_a_handler_error(
    make_app: Any,
) -> None:
    seen: list[str] = []
    app = echo_app(make_app, [Rewriting(fail=True)], seen)
    async with working(app):
        job_id = await app.enqueue("echo", Text(text="hi"))
        job = await app.wait_for(job_id, timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert (job.error.type, job.error.message) == ("ValueError", f"middleware refused job {job_id}")
    assert job.error.traceback is not None
    assert "rewrite" in job.error.traceback
    assert seen == []  # the handler never ran


# -- serializers ----------------------------------------------------------------------------


class Shape(BaseModel):
    name: str
    sides: list[int]
    meta: dict[str, float | None]


VALUES: list[Any] = [
    {"a": 1, "nested": {"b": [1, 2.5, None, True, "é"]}},
    [1, "two", {"three": 3}, []],
    Shape(name="square", sides=[1, 1, 1, 1], meta={"area": 1.0, "colour": None}),
    "text",
    42,
]


class Index(BaseModel):
    index: int


async def results_with(make_app: Any, **settings: Any) -> list[Any]:
    app = make_app(**settings)

    @app.register("value")
    async def value(payload: Index) -> Any:
        return VALUES[payload.index]

    async with working(app):
        ids = [await app.enqueue("value", {"index": i}) for i in range(len(VALUES))]
        for job_id in ids:
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
        return [await app.get_job_result(job_id) for job_id in ids]


async def test_orjson_stores_the_same_results_as_json(make_app: Any) -> None:
    by_json = await results_with(make_app)
    by_orjson = await results_with(make_app, serializer="orjson")
    assert by_orjson == by_json
    assert by_json[2] == VALUES[2].model_dump()


class EnvelopeSerializer(serializers.Serializer):
    """A plugin serializer whose output is easy to recognise in the stored result."""

    name: ClassVar[str] = "envelope"

    def dumps(self, value: Any) -> str:
        return json.dumps({"envelope": pydantic_core.to_jsonable_python(value)})


class EnvelopePlugin:
    @hookimpl
    def polyqueue_register_serializers(self) -> list[type[serializers.Serializer]]:
        return [EnvelopeSerializer]


async def test_a_plugin_serializer_is_selected_by_name(make_app: Any) -> None:
    results = await results_with(make_app, serializer="envelope", plugins=[EnvelopePlugin()])
    assert results[0] == {"envelope": VALUES[0]}
    assert results[2] == {"envelope": VALUES[2].model_dump()}


def test_an_unknown_serializer_names_the_setting_and_lists_the_known_ones() -> None:
    with pytest.raises(UnknownPluginError, match="POLYQUEUE_SERIALIZER") as raised:
        Polyqueue(database_url=NO_DB, serializer="pickle", plugins=[EnvelopePlugin()])
    assert raised.value.name == "pickle"
    assert {"json", "orjson", "envelope"} <= set(raised.value.available)
    assert "available: " in str(raised.value)
    assert "envelope" in str(raised.value)


def test_an_unknown_broker_names_the_setting_and_lists_the_known_ones() -> None:
    with pytest.raises(UnknownPluginError, match="POLYQUEUE_QUEUE_BACKEND") as raised:
        Polyqueue(database_url=NO_DB, queue_backend="rabbit")
    assert {"none", "postgres"} <= set(raised.value.available)
    assert "none" in str(raised.value)


def test_a_duplicate_serializer_name_is_refused() -> None:
    class Impostor(EnvelopeSerializer):
        name: ClassVar[str] = "json"

    class Plugin:
        @hookimpl
        def polyqueue_register_serializers(self) -> list[type[serializers.Serializer]]:
            return [Impostor]

    with pytest.raises(ConfigurationError, match="two plugins register a serializer named 'json'"):
        Polyqueue(database_url=NO_DB, plugins=[Plugin()])


@pytest.mark.parametrize("name", ["json", "orjson"])
def test_built_in_serializers_write_standard_json_never_pickle(name: str) -> None:
    serializer = serializers_by_name()[name]()
    for value in VALUES:
        text = serializer.dumps(value)
        assert isinstance(text, str)
        expected = value.model_dump() if isinstance(value, BaseModel) else value
        assert json.loads(text) == expected == serializer.loads(text)
    with pytest.raises(polyqueue.SerializationError):
        serializer.dumps(object())  # no pickle fallback for arbitrary objects


def serializers_by_name() -> dict[str, type[serializers.Serializer]]:
    return serializer_classes(create_plugin_manager())


# -- migration lines ------------------------------------------------------------------------


@pytest.fixture
def example_hooks(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example plugin's hooks module, imported from its source (not installed)."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_SRC))
    from polyqueue_example import hooks  # noqa: PLC0415

    yield hooks
    for name in [m for m in sys.modules if m.split(".")[0] == "polyqueue_example"]:
        del sys.modules[name]


async def test_a_plugin_migration_line_is_applied_at_start_and_recorded(
    make_app: Any, db: Any, example_hooks: Any
) -> None:
    await db.execute("DROP TABLE IF EXISTS polyqueue.example_notes")
    await db.execute("DELETE FROM polyqueue.migrations WHERE line = 'example'")
    app = make_app(plugins=[example_hooks])
    assert [line.name for line in app.migration_lines] == ["example"]
    for _ in range(2):  # idempotent: the second start applies nothing
        async with app:
            pass
        rows = await db.fetch("SELECT line, version, name FROM polyqueue.migrations ORDER BY 1, 2")
        assert [tuple(r) for r in rows if r["line"] == "example"] == [("example", 1, "notes")]
        assert {r["line"] for r in rows} == {"polyqueue", "example"}
    await db.execute("INSERT INTO polyqueue.example_notes (note) VALUES ('hello')")
    assert await db.fetchval("SELECT note FROM polyqueue.example_notes") == "hello"


def test_two_migration_lines_with_one_name_are_refused(example_hooks: Any) -> None:
    class Twin:
        @hookimpl
        def polyqueue_register_migrations(self) -> list[sql.MigrationLine]:
            return [sql.MigrationLine("example", "polyqueue_example")]

    with pytest.raises(ConfigurationError, match="migration line names must be unique"):
        Polyqueue(database_url=NO_DB, plugins=[example_hooks, Twin()])


# -- logging --------------------------------------------------------------------------------

handler_log = logging.getLogger("tests.handlers")


def logging_app(make_app: Any) -> Polyqueue:
    app = make_app()

    @app.register("log.async")
    async def log_async(payload: Text) -> None:
        handler_log.info("async says %s", payload.text)

    @app.register("log.sync")
    def log_sync(payload: Text) -> None:  # runs in the thread pool
        handler_log.info("sync says %s", payload.text)

    @app.register("log.fail", max_attempts=1)
    async def log_fail(payload: Text) -> None:
        raise TerminalError(f"cannot {payload.text}")

    return app


def job_fields_of(record: Any) -> dict[str, Any]:
    return {k: getattr(record, k, None) for k in ("job_id", "handler", "queue", "attempt")}


async def test_every_log_line_of_a_job_carries_its_fields(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(JobFieldsFilter())
    caplog.set_level(logging.INFO)
    app = logging_app(make_app)
    async with working(app) as worker:
        ids = {
            name: await app.enqueue(name, Text(text="hi"))
            for name in ("log.async", "log.sync", "log.fail")
        }
        for job_id in ids.values():
            await app.wait_for(job_id, timeout=30)
    for name, job_id in ids.items():
        records = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
        for record in records:
            assert job_fields_of(record) == {
                "job_id": job_id,
                "handler": name,
                "queue": "default",
                "attempt": 1,
            }
            assert record.worker_id == worker.id  # type: ignore[attr-defined]
        messages = [r.getMessage() for r in records]
        assert messages[0] == "started"
        if name != "log.fail":
            assert f"{name.split('.')[1]} says hi" in messages
            assert re.fullmatch(r"succeeded in \d+\.\d{3}s", messages[-1])
    failed = [r for r in caplog.records if getattr(r, "job_id", None) == ids["log.fail"]][-1]
    assert failed.levelno == logging.WARNING  # an expected TerminalError: one line
    text = failed.getMessage()
    assert re.fullmatch(r"failed in \d+\.\d{3}s for good: TerminalError: cannot hi", text)
    assert failed.exc_text is None


@contextlib.contextmanager
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`configure_logging(log_format="json")` into a buffer; the root logger restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    try:
        configure_logging("INFO", "json")
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_json_logs_are_one_parseable_object_per_line_with_the_job_fields(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = logging_app(make_app)
    with json_logs(monkeypatch) as buffer:
        async with working(app) as worker:
            ok = await app.enqueue("log.sync", Text(text="json"))
            bad = await app.enqueue("log.fail", Text(text="json"))
            await app.wait_for(ok, timeout=30)
            await app.wait_for(bad, timeout=30)
    entries = [json.loads(line) for line in buffer.getvalue().splitlines()]
    said = next(e for e in entries if e["message"] == "sync says json")
    assert said["logger"] == "tests.handlers"
    assert said["level"] == "info"
    assert {k: said[k] for k in ("job_id", "handler", "queue", "attempt", "worker_id")} == {
        "job_id": ok,
        "handler": "log.sync",
        "queue": "default",
        "attempt": 1,
        "worker_id": worker.id,
    }
    assert "time" in said
    failed = [e for e in entries if e.get("job_id") == bad and e["level"] == "warning"]
    assert len(failed) == 1  # an expected TerminalError: one line, no traceback
    assert failed[0]["message"].endswith("for good: TerminalError: cannot json")
    assert "exception" not in failed[0]
    outside = [e for e in entries if "job_id" not in e]
    assert any(e["message"].startswith(f"worker {worker.id} started") for e in outside)


# -- the examples in docs/plugins/writing-a-plugin.md run -----------------------------------


def doc_modules() -> dict[str, types.ModuleType]:
    """Each python block of writing-a-plugin.md that starts with `# myapp/x.py`, as a module."""
    text = (ROOT / "docs" / "plugins" / "writing-a-plugin.md").read_text()
    modules = {}
    for block in re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        header = re.match(r"# myapp/(\w+)\.py\n", block)
        if header is None:
            continue
        module = types.ModuleType(f"myapp_{header[1]}")
        sys.modules[module.__name__] = module  # dataclasses and typing look modules up
        try:
            exec(compile(block, f"writing-a-plugin.md:{header[1]}", "exec"), vars(module))  # noqa: S102
        finally:
            del sys.modules[module.__name__]
        modules[header[1]] = module
    return modules


async def test_the_plugins_in_writing_a_plugin_run(make_app: Any, db: Any) -> None:
    docs = doc_modules()
    assert set(docs) == {"metrics", "request_ids", "compact", "migrations"}
    counter = docs["metrics"].JobCounter()
    request_id = docs["request_ids"].request_id
    app = make_app(
        plugins=[docs["request_ids"].RequestIds(), docs["compact"]],
        metrics=counter,
        serializer="compact",
    )

    @app.register("greet", max_attempts=2)
    async def greet(payload: Text, ctx: JobContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"z": payload.text, "a": request_id.get()}

    async with working(app):
        token = request_id.set("req-42")
        try:
            job_id = await app.enqueue("greet", Text(text="hi"))
        finally:
            request_id.reset(token)
        job = await app.wait_for(job_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED
    assert job.headers == {"request_id": "req-42"}
    assert job.result == {"a": "req-42", "z": "hi"}
    assert counter.counts == {
        ("greet", "enqueued"): 1,
        ("greet", "retrying"): 1,
        ("greet", "succeeded"): 1,
    }
    compact = docs["compact"].CompactJson()
    assert compact.dumps({"b": 1, "a": [1.5]}) == '{"a":[1.5],"b":1}'
    with pytest.raises(polyqueue.SerializationError):
        compact.dumps({"x": float("nan")})
    (line,) = docs["migrations"].polyqueue_register_migrations()
    assert (line.name, line.package) == ("mybroker", "polyqueue_mybroker")


class NotOurs(TerminalError):
    """A user's own kind of terminal failure."""


async def test_a_terminal_error_subclass_is_one_warning_line(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(JobFieldsFilter())
    caplog.set_level(logging.INFO)
    app = make_app()

    @app.register("log.subclass", max_attempts=1)
    async def log_subclass(payload: Text) -> None:
        raise NotOurs("refused")

    async with working(app):
        job_id = await app.enqueue("log.subclass", Text(text="x"))
        assert (await app.wait_for(job_id, timeout=30)).status.value == "failed"
    (failed,) = [
        r
        for r in caplog.records
        if getattr(r, "job_id", None) == job_id and "for good" in r.getMessage()
    ]
    assert failed.levelno == logging.WARNING
    assert failed.exc_text is None
    assert failed.getMessage().endswith("for good: NotOurs: refused")
