"""The dashboard over HTTP (httpx, no browser): pages, auth and CSRF refusals, read-only
mode, and bad parameters (a 4xx naming the parameter, never a 500)."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount

import polyqueue.dashboard.queries as dashboard_queries
from polyqueue import CronTick, Polyqueue, TerminalError
from polyqueue.dashboard import BasicAuth, TokenAuth, check_exposure, create_app
from polyqueue.exceptions import ConfigurationError

TOKEN = "a-token-of-sixteen-or-more"  # noqa: S105 -- the tests' own

Client = Callable[..., Any]


class Report(BaseModel):
    pages: int = 1
    broken: bool = False
    customer: str = ""


def build(make_app: Callable[..., Polyqueue]) -> Polyqueue:
    app = make_app()

    @app.register("reports.build", queue="reports")
    async def build_report(payload: Report) -> dict[str, Any]:
        if payload.broken:
            raise TerminalError("the report template is missing")
        return {"pages": payload.pages}

    return app


@pytest.fixture
async def app(make_app: Callable[..., Polyqueue]) -> Polyqueue:
    queue = build(make_app)
    await queue.start()
    return queue


@pytest.fixture
async def client(app: Polyqueue) -> AsyncIterator[Client]:
    opened: list[httpx.AsyncClient] = []

    async def open_client(**options: Any) -> httpx.AsyncClient:
        site = create_app(options.pop("app", app), **options)
        transport = httpx.ASGITransport(app=site, raise_app_exceptions=True)
        http = httpx.AsyncClient(
            transport=transport, base_url="http://dash", headers={"accept": "text/html"}
        )
        opened.append(http)
        return http

    yield open_client
    for http in opened:
        await http.aclose()


async def csrf_of(http: httpx.AsyncClient, path: str = "/") -> str:
    page = await http.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "the page has no CSRF field"
    return found[1]


async def test_every_page_renders(app: Polyqueue, client: Client) -> None:
    ok = await app.enqueue("reports.build", {"pages": 3})
    bad = await app.enqueue("reports.build", {"broken": True})
    await app.run_until_idle()
    http = await client()
    for path in ("/", "/jobs", f"/jobs/{ok}", f"/jobs/{bad}", "/workers", "/queues", "/cron"):
        response = await http.get(path)
        assert response.status_code == 200, (path, response.text)
    failed = (await http.get(f"/jobs/{bad}")).text
    assert "the report template is missing" in failed
    assert "Retry" in failed
    assert "<svg" in (await http.get("/")).text


async def test_the_jobs_page_filters_and_pages_by_keyset(app: Polyqueue, client: Client) -> None:
    ids = await app.enqueue_many("reports.build", [{"pages": n} for n in range(7)])
    needle = await app.enqueue("reports.build", {"pages": 99, "customer": "zebra-17"})
    http = await client()
    first = await http.get("/jobs", params={"limit": "20", "q": "ZEBRA-17"})
    assert f"#{needle}" in first.text
    assert f"#{ids[0]}<" not in first.text
    page = (await http.get("/jobs", params={"limit": "20", "queue": "reports"})).text
    assert all(f"#{job_id}<" in page for job_id in [*ids, needle])
    assert (await http.get("/jobs", params={"queue": "nope"})).text.count("data-job=") == 0
    older = await http.get("/jobs", params={"before": str(ids[3]), "limit": "20"})
    assert re.findall(r'data-job="(\d+)"', older.text) == [str(i) for i in reversed(ids[:3])]
    newer = await http.get("/jobs", params={"after": str(ids[3]), "limit": "20"})
    shown = [int(i) for i in re.findall(r'data-job="(\d+)"', newer.text)]
    assert shown == sorted([*ids[4:], needle], reverse=True)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"status": "exploded"}, "status"),
        ({"before": "abc"}, "before"),
        ({"before": "99999999999999999999999"}, "before"),
        ({"after": "-3"}, "after"),
        ({"limit": "7"}, "limit"),
        ({"since": "yesterday-ish"}, "since"),
        ({"since": "2h", "until": "3h"}, "since"),
        ({"q": "a\x00b"}, "q"),
        ({"queue": "x" * 600}, "queue"),
        ({"before": "5", "after": "3"}, "before"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    client: Client, query: dict[str, str], named: str
) -> None:
    response = await (await client()).get("/jobs", params=query)
    assert response.status_code == 400
    assert named in response.text


async def test_missing_things_are_404s(client: Client) -> None:
    http = await client()
    assert (await http.get("/jobs/123456789")).status_code == 404
    assert (await http.get("/jobs/99999999999999999999999")).status_code == 404
    assert (await http.get("/jobs/abc")).status_code == 404
    assert (await http.get("/nowhere")).status_code == 404
    live = await http.get("/live/jobs", params={"id": "x"})
    assert live.status_code == 400
    assert live.json()["error"].startswith("id:")


async def test_a_post_without_the_csrf_token_is_refused(app: Polyqueue, client: Client) -> None:
    job_id = await app.enqueue("reports.build", {"pages": 1})
    http = await client()
    token = await csrf_of(http, f"/jobs/{job_id}")
    missing = await http.post(f"/jobs/{job_id}/action", data={"action": "cancel"})
    forged = await http.post(f"/jobs/{job_id}/action", data={"action": "cancel", "csrf": "0" * 64})
    assert missing.status_code == forged.status_code == 403
    assert "CSRF" in missing.text
    stranger = await client()  # another browser: its own cookie, so this token is not its
    stolen = await stranger.post(f"/jobs/{job_id}/action", data={"action": "cancel", "csrf": token})
    assert stolen.status_code == 403
    assert (await app.get_job(job_id)).status == "queued"
    done = await http.post(f"/jobs/{job_id}/action", data={"action": "cancel", "csrf": token})
    assert done.status_code == 303
    assert (await app.get_job(job_id)).status == "cancelled"


async def test_bulk_actions_on_a_selection_and_on_a_filter(app: Polyqueue, client: Client) -> None:
    ids = await app.enqueue_many("reports.build", [{"broken": True} for _ in range(4)])
    await app.run_until_idle()
    http = await client()
    token = await csrf_of(http, "/jobs")
    form = {"csrf": token, "action": "requeue", "id": [str(ids[0]), str(ids[1])]}
    response = await http.post("/jobs/action", data=form)
    assert response.status_code == 303
    statuses = [(await app.get_job(i)).status for i in ids]
    assert statuses == ["queued", "queued", "failed", "failed"]
    by_filter = {"csrf": token, "action": "cancel-filter", "status": "queued", "queue": "reports"}
    assert (await http.post("/jobs/action", data=by_filter)).status_code == 303
    statuses = [(await app.get_job(i)).status for i in ids]
    assert statuses == ["cancelled", "cancelled", "failed", "failed"]
    page = await http.get(response.headers["location"])
    assert "requeued 2 of 2 jobs" in page.text or "cancelled 2 of 2 jobs" in page.text
    refused = await http.post("/jobs/action", data={"csrf": token, "action": "explode", "id": "1"})
    assert refused.status_code == 400
    none = await http.post("/jobs/action", data={"csrf": token, "action": "cancel"})
    assert none.status_code == 400


async def test_pause_and_resume_a_queue(app: Polyqueue, client: Client) -> None:
    await app.enqueue("reports.build", {"pages": 1})
    http = await client()
    token = await csrf_of(http, "/queues")
    form = {"csrf": token, "queue": "reports", "action": "pause"}
    assert (await http.post("/queues/action", data=form)).status_code == 303
    assert [p.queue for p in await app.paused_queues()] == ["reports"]
    assert "Resume" in (await http.get("/queues")).text
    form["action"] = "resume"
    assert (await http.post("/queues/action", data=form)).status_code == 303
    assert await app.paused_queues() == []


async def test_read_only_mode_refuses_writes_and_hides_buttons(
    app: Polyqueue, client: Client
) -> None:
    job_id = await app.enqueue("reports.build", {"pages": 1})
    http = await client(read_only=True)
    token = await csrf_of(http, "/jobs")
    page = (await http.get(f"/jobs/{job_id}")).text
    assert "read-only" in page
    assert ">Cancel<" not in page
    response = await http.post(f"/jobs/{job_id}/action", data={"action": "cancel", "csrf": token})
    assert response.status_code == 403
    assert "read-only" in response.text
    assert (await app.get_job(job_id)).status == "queued"


async def test_token_auth(app: Polyqueue, client: Client) -> None:
    http = await client(auth=TokenAuth(TOKEN))
    redirected = await http.get("/jobs")
    assert redirected.status_code == 303
    assert redirected.headers["location"].endswith("/login")
    assert (await http.get("/live/overview")).status_code == 401
    assert (await http.get("/static/dashboard.css")).status_code == 200
    bearer = await http.get("/jobs", headers={"authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    wrong = await http.get("/jobs", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 303
    token = await csrf_of(http, "/login")
    refused = await http.post("/login", data={"csrf": token, "token": "not-it"})
    assert refused.status_code == 401
    assert (await http.post("/login", data={"token": TOKEN})).status_code == 403  # no CSRF
    logged_in = await http.post("/login", data={"csrf": token, "token": TOKEN})
    assert logged_in.status_code == 303
    assert (await http.get("/jobs")).status_code == 200
    await http.post("/logout", data={"csrf": token})
    assert (await http.get("/jobs")).status_code == 303


async def test_basic_auth(client: Client) -> None:
    http = await client(auth=BasicAuth("ops", "s3cret-pass"))
    refused = await http.get("/")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"ops:guess").decode()
    assert (await http.get("/", headers={"authorization": f"Basic {wrong}"})).status_code == 401
    garbage = await http.get("/", headers={"authorization": "Basic %%%"})
    assert garbage.status_code == 401
    right = base64.b64encode(b"ops:s3cret-pass").decode()
    assert (await http.get("/", headers={"authorization": f"Basic {right}"})).status_code == 200


def test_exposure_needs_auth_off_loopback() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        check_exposure(host, None)
    for host in ("0.0.0.0", "192.168.1.4", "::", "dashboard.example.com"):  # noqa: S104
        with pytest.raises(ConfigurationError, match="without authentication"):
            check_exposure(host, None)
        check_exposure(host, TokenAuth(TOKEN))
    with pytest.raises(ConfigurationError, match="16 characters"):
        TokenAuth("short")
    assert TOKEN not in repr(TokenAuth(TOKEN))
    assert "s3cret" not in repr(BasicAuth("ops", "s3cret-pass"))


async def test_live_endpoints_return_fragments(app: Polyqueue, client: Client) -> None:
    job_id = await app.enqueue("reports.build", {"pages": 1})
    http = await client()
    overview = (await http.get("/live/overview")).json()["fragments"]
    assert overview["total-queued"] == "1"
    jobs = (await http.get("/live/jobs", params={"id": str(job_id)})).json()["fragments"]
    assert "queued" in jobs[f"job-{job_id}"]
    detail = (await http.get(f"/live/jobs/{job_id}")).json()["fragments"]
    assert "queued" in detail["job-detail"]
    assert "workers" in (await http.get("/live/workers")).json()["fragments"]
    assert "reports" in (await http.get("/live/queues")).json()["fragments"]["queues"]


async def test_a_job_shows_every_attempt(
    make_app: Callable[..., Polyqueue], client: Client
) -> None:
    app = make_app()
    calls: list[int] = []

    @app.register("flaky.sync", queue="flaky", max_attempts=3)
    async def flaky(payload: Report) -> dict[str, int]:
        calls.append(payload.pages)
        if len(calls) < 3:
            raise RuntimeError(f"upstream timed out, call {len(calls)}")
        return {"calls": len(calls)}

    await app.start()
    job_id = await app.enqueue("flaky.sync", {"pages": 1})
    await app.run_until_idle()
    assert (await app.get_job(job_id)).status == "succeeded"
    http = await client(app=app)
    page = (await http.get(f"/jobs/{job_id}")).text
    attempts = page[page.index("<h2>Attempts</h2>") : page.index("<h2>Timeline</h2>")]
    assert attempts.count("<tr><td>") == 3
    assert "upstream timed out, call 1" in attempts
    assert "upstream timed out, call 2" in attempts
    assert "s-succeeded" in attempts
    assert "attempt 2 failed: RuntimeError" in page


async def test_mounted_under_a_path_its_links_and_cookies_stay_under_it(
    app: Polyqueue,
) -> None:
    job_id = await app.enqueue("reports.build", {"pages": 1})
    host = Starlette(routes=[Mount("/ops/queue", create_app(app))])
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://host") as http:
        page = await http.get("/ops/queue/jobs")
        assert page.status_code == 200
        assert f'href="/ops/queue/jobs/{job_id}"' in page.text
        assert 'href="/ops/queue/static/dashboard.css"' in page.text
        assert "Path=/ops/queue" in page.headers["set-cookie"]
        assert (await http.get("/ops/queue/static/dashboard.js")).status_code == 200
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert token
        done = await http.post(
            f"/ops/queue/jobs/{job_id}/action", data={"action": "cancel", "csrf": token[1]}
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/ops/queue/jobs/{job_id}"
    assert (await app.get_job(job_id)).status == "cancelled"


async def test_workflows_and_a_workflow_graph(app: Polyqueue, client: Client) -> None:
    chord = await app.chord("reports.build", [{"pages": 1}, {"broken": True}], "reports.build")
    await app.run_until_idle()
    http = await client()
    listing = (await http.get("/workflows")).text
    assert f'href="/workflows/{chord.id}"' in listing
    assert "failed" in listing
    page = await http.get(f"/workflows/{chord.id}")
    assert page.status_code == 200
    graph = page.text[page.text.index("<svg") : page.text.index("</svg>")]
    first, broken, callback = chord.job_ids
    assert graph.count("<rect") == 3
    assert graph.count('class="edge"') == 2
    assert f'data-node="{first}"><title>#{first} reports.build: succeeded' in graph
    assert f'data-node="{broken}"><title>#{broken} reports.build: failed' in graph
    assert f'data-node="{callback}"><title>#{callback} reports.build: cancelled' in graph
    job_page = (await http.get(f"/jobs/{callback}")).text
    assert f'href="/workflows/{chord.id}"' in job_page
    live = (await http.get(f"/live/workflows/{chord.id}")).json()["fragments"]["workflow"]
    assert "<svg" in live
    assert (await http.get("/workflows/999999")).status_code == 404
    assert (await http.get("/workflows/99999999999999999999999")).status_code == 404


async def test_a_text_search_looks_at_a_window_and_searches_on_from_its_end(
    app: Polyqueue, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_queries, "SEARCH_WINDOW", 3)
    old = await app.enqueue("reports.build", {"customer": "needle-co"})
    await app.enqueue_many("reports.build", [{"pages": n} for n in range(5)])
    http = await client()
    first = await http.get("/jobs", params={"q": "needle", "limit": "20"})
    assert "data-job=" not in first.text
    assert "looked at the newest 3 jobs" in first.text
    older = re.search(r'href="(/jobs\?[^"]*before=\d+)" rel="next"', first.text)
    assert older, "no way to search on"
    second = (await http.get(older[1].replace("&amp;", "&"))).text
    assert re.findall(r'data-job="(\d+)"', second) == [str(old)]


async def test_the_cron_page_shows_last_and_next_fire(
    make_app: Callable[..., Polyqueue], client: Client, db: Any
) -> None:
    app = make_app()

    @app.cron("*/5 * * * *", name="reports.nightly")
    async def nightly(tick: CronTick) -> None:
        return None

    await app.start()
    tick = datetime(2026, 1, 31, 12, 5, tzinfo=UTC)
    await db.execute(
        "INSERT INTO polyqueue.cron_schedules (name, expression, last_tick) VALUES"
        " ('reports.nightly', '*/5 * * * *', $1), ('gone.hourly', '0 * * * *', $1)",
        tick,
    )
    job_id = await app.enqueue(
        "reports.nightly",
        {"schedule": "reports.nightly", "tick": tick.isoformat()},
        idempotency_key=f"cron:reports.nightly:{tick.isoformat()}",
    )
    http = await client(app=app)
    page = (await http.get("/cron")).text
    rows = dict(re.findall(r"<tr><td>([\w.]+)</td>(.*?)</tr>", page, re.DOTALL))
    assert set(rows) == {"reports.nightly", "gone.hourly"}  # registered and/or in the ledger
    assert "2026-01-31 12:05:00" in rows["reports.nightly"]
    assert f'href="/jobs/{job_id}"' in rows["reports.nightly"]
    assert "<td>-</td>" in rows["gone.hourly"]  # its handler is not in this app
    for row in rows.values():
        next_tick = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) <span", row)
        assert next_tick
        assert datetime.fromisoformat(next_tick[1]).replace(tzinfo=UTC) > datetime.now(UTC)


ODD_VALUES = ["", " ", "0", "-1", "1e9", "9" * 30, "%", "'; drop", "\u00e9\u4e2d", "999999d"]


@pytest.mark.parametrize(
    "path",
    ["/", "/jobs", "/workers", "/queues", "/cron", "/workflows", "/live/overview", "/live/jobs"],
)
async def test_odd_query_values_never_make_a_500(client: Client, path: str) -> None:
    http = await client()
    keys = ["status", "queue", "handler", "since", "until", "q", "before", "after", "limit", "id"]
    for key in keys:
        for value in ODD_VALUES:
            response = await http.get(path, params={key: value})
            assert response.status_code < 500, (path, key, value, response.text)
            if response.status_code >= 400:
                assert key in response.text, (path, key, value, response.text)


async def test_a_post_that_is_not_a_form_is_a_415(client: Client) -> None:
    http = await client()
    response = await http.post("/jobs/action", json={"action": "cancel", "id": [1]})
    assert response.status_code == 415
    assert "form" in response.text


async def test_non_ascii_tokens_and_cookies_are_refused_not_crashed(
    app: Polyqueue, client: Client
) -> None:
    job_id = await app.enqueue("reports.build", {"pages": 1})
    http = await client(auth=TokenAuth(TOKEN))
    form = {"action": "cancel", "csrf": "\u00e9t\u00e9"}
    headers = {"authorization": f"Bearer {TOKEN}"}
    response = await http.post(f"/jobs/{job_id}/action", data=form, headers=headers)
    assert response.status_code == 403
    cookie = {"cookie": "polyqueue_auth=caf\u00e9".encode()}
    assert (await http.get("/live/overview", headers=cookie)).status_code == 401
