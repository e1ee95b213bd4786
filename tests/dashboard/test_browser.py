"""The dashboard in a real browser (Playwright driving Debian's Chromium), used as a person
would: filter jobs, open a failed one and retry it, cancel a running one, pause a queue and
see workers leave its jobs alone, watch a worker come and go, all while pages update live.

Every wait is Playwright's `expect`, which polls a condition until its deadline: no sleeps.
Set POLYQUEUE_SCREENSHOTS=1 to write the screenshots of docs/dashboard.md into docs/images.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from polyqueue.dashboard import TokenAuth

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

# The first test installs Chromium when it is missing (a new machine, CI): its fixture's
# apt-get then counts against the test's timeout, so the bound is wider only then.
pytestmark = pytest.mark.timeout(180 if Path("/usr/bin/chromium").exists() else 1800)


def shoot(page: Any, name: str, tmp_path: Path) -> None:
    """A full-page screenshot: into docs/images with POLYQUEUE_SCREENSHOTS=1, else tmp."""
    folder = IMAGES if os.environ.get("POLYQUEUE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=True)


def job_row(page: Any, job_id: int) -> Any:
    return page.locator(f'tr[data-job="{job_id}"]')


def test_filter_jobs_open_a_failed_one_retry_it_and_see_it_succeed(
    stack: Any, page: Any, tmp_path: Path
) -> None:
    worker = stack.start_worker()
    failed = stack.enqueue("shop.charge", {"order": 41, "note": "gift wrap"})
    mails = [stack.enqueue("mail.send", {"to": f"user{n}@example.com"}) for n in range(3)]
    page.goto(stack.url + "/")
    expect(page.locator("#total-failed")).to_have_text("1")  # live, without a reload
    expect(page.locator("#total-succeeded")).to_have_text("3")
    shoot(page, "overview", tmp_path)

    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("failed").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(job_row(page, failed)).to_contain_text("card declined for order 41")
    page.get_by_label("failed").uncheck()
    page.get_by_label("Text in error or payload").fill("user2@")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(job_row(page, mails[2])).to_be_visible()
    page.get_by_label("Text in error or payload").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr[data-job]")).to_have_count(4)
    shoot(page, "jobs", tmp_path)

    job_row(page, failed).get_by_role("link", name=f"#{failed}").click()
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator(".error-line")).to_contain_text("TerminalError")
    expect(page.locator("#payload")).to_contain_text('"note": "gift wrap"')
    shoot(page, "job-failed", tmp_path)

    stack.declining = False
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash")).to_contain_text(f"job #{failed} requeued")
    expect(page.locator("#job-status")).to_have_text("succeeded")  # live update
    expect(page.locator("#result")).to_contain_text('"charged": 41')
    assert stack.status(failed) == "succeeded"
    stack.stop_worker(worker)


def test_cancel_a_running_job(stack: Any, page: Any, tmp_path: Path) -> None:
    stack.start_worker()
    job_id = stack.enqueue("shop.pack", {"order": 7})
    page.goto(f"{stack.url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.locator("#job-detail")).to_contain_text("packing boxes")
    shoot(page, "job-running", tmp_path)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-status")).to_have_text("cancelled")
    page.goto(stack.url + "/")
    expect(page.locator("#running")).to_contain_text("No job is running")


def test_pause_a_queue_and_see_workers_leave_it_alone(
    stack: Any, page: Any, tmp_path: Path
) -> None:
    stack.start_worker()
    first = stack.enqueue("mail.send", {"to": "a@example.com"})
    page.goto(f"{stack.url}/jobs/{first}")
    expect(page.locator("#job-status")).to_have_text("succeeded")  # before the pause
    page.goto(stack.url + "/queues")
    mail = page.locator('tr[data-queue="mail"]')
    expect(mail).to_contain_text("active")
    mail.get_by_role("button", name="Pause").click()
    expect(page.locator(".flash")).to_contain_text("queue mail paused")
    held = stack.enqueue("mail.send", {"to": "held@example.com"})
    after = stack.enqueue("shop.charge", {"order": 1})  # another queue, enqueued later
    page.goto(f"{stack.url}/jobs/{after}")
    expect(page.locator("#job-status")).to_have_text("failed")  # the worker went past it
    assert stack.status(held) == "queued"
    page.goto(stack.url + "/queues")
    mail = page.locator('tr[data-queue="mail"]')
    expect(mail).to_contain_text("paused")
    expect(mail.locator("td.num").first).to_have_text("1")  # one waiting
    shoot(page, "queues", tmp_path)
    mail.get_by_role("button", name="Resume").click()
    expect(page.locator(".flash")).to_contain_text("queue mail resumed")
    page.goto(f"{stack.url}/jobs/{held}")
    expect(page.locator("#job-status")).to_have_text("succeeded")


def test_watch_a_worker_appear_and_go_away(stack: Any, page: Any, tmp_path: Path) -> None:
    page.goto(stack.url + "/workers")
    expect(page.locator("#workers")).to_contain_text("No worker has registered")
    worker = stack.start_worker(queues=["mail"])
    row = page.locator("tr[data-worker]")
    expect(row).to_have_count(1)  # appears without a reload
    expect(row.locator(".status")).to_have_text("running")
    expect(row).to_contain_text("mail")
    shoot(page, "workers", tmp_path)
    page.evaluate("window.scrollTo(0, 0); document.body.dataset.marker = 'same page'")
    stack.stop_worker(worker)
    expect(row.locator(".status")).to_have_text("stopped")
    assert page.evaluate("document.body.dataset.marker") == "same page"  # never reloaded


def test_bulk_retry_of_a_selection(stack: Any, page: Any) -> None:
    worker = stack.start_worker()
    ids = [stack.enqueue("shop.charge", {"order": n}) for n in range(3)]
    for job_id in ids:
        stack.run(stack.app.wait_for(job_id, timeout=30))
    page.goto(stack.url + "/jobs?status=failed")
    expect(page.locator("tr[data-job]")).to_have_count(3)
    stack.declining = False
    for job_id in ids[:2]:
        page.get_by_label(f"select job {job_id}").check()
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("requeued 2 of 2 jobs")
    page.goto(stack.url + "/jobs")
    for job_id in ids[:2]:
        expect(job_row(page, job_id).locator(".status")).to_have_text("succeeded")
    expect(job_row(page, ids[2]).locator(".status")).to_have_text("failed")
    stack.stop_worker(worker)


def test_a_token_protected_dashboard_asks_to_log_in(stack_factory: Any, page: Any) -> None:
    token = "correct-horse-battery-staple"  # noqa: S105 -- the test's own
    stack = stack_factory(auth=TokenAuth(token))
    page.goto(stack.url + "/jobs")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Token").fill("wrong-token-wrong-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".flash.error")).to_be_visible()
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def test_read_only_shows_no_actions(stack_factory: Any, page: Any) -> None:
    stack = stack_factory(read_only=True)
    job_id = stack.enqueue("mail.send", {"to": "x@example.com"})
    page.goto(f"{stack.url}/jobs/{job_id}")
    expect(page.locator(".badge")).to_have_text("read-only")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    page.goto(stack.url + "/jobs")
    expect(page.locator('input[name="id"]')).to_have_count(0)


def test_a_workflow_graph_follows_its_jobs(stack: Any, page: Any, tmp_path: Path) -> None:
    mails = [{"to": f"team{n}@example.com"} for n in range(3)]
    chord = stack.run(stack.app.chord("mail.send", mails, "mail.send", {"to": "boss@example.com"}))
    callback = chord.job_ids[-1]
    page.goto(f"{stack.url}/jobs/{callback}")
    expect(page.locator("#job-status")).to_have_text("waiting")
    page.get_by_role("link", name=f"workflow {chord.id}").click()
    expect(page.locator("#workflow-status")).to_have_text("running")
    expect(page.locator("svg.graph rect")).to_have_count(4)
    stack.start_worker()
    expect(page.locator("#workflow-status")).to_have_text("succeeded")  # live
    expect(page.locator(f'[data-node="{callback}"] rect')).to_have_class(re.compile("s-succeeded"))
    shoot(page, "workflow", tmp_path)
    page.locator(f'[data-node="{callback}"]').click()
    expect(page.locator("#result")).to_contain_text("boss@example.com")


def test_live_updates_keep_the_scroll_position(stack: Any, page: Any) -> None:
    for n in range(60):
        stack.enqueue("mail.send", {"to": f"reader{n}@example.com"})
    page.goto(stack.url + "/jobs?limit=100")
    expect(page.locator("tr[data-job]")).to_have_count(60)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    stack.start_worker()
    last = page.locator("tr[data-job]").last.locator(".status")
    expect(last).to_have_text("succeeded")  # changed in place by the live updates
    assert page.evaluate("window.scrollY") == scrolled
