"""`Wakeup`: waking and interrupting waiting receives, on a real event loop.

Tasks tell the test they are waiting by setting an event just before they wait: the test
resumes only once they are suspended. No sleep synchronises anything here.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from polyqueue.wakeup import Waiter, Wakeup

if TYPE_CHECKING:
    from collections.abc import Awaitable


def waiting(
    waiter: Waiter, timeout: float | None = None
) -> tuple[asyncio.Event, asyncio.Task[bool]]:
    """A task in `waiter.wait(timeout)`; once the event is set, the task is waiting."""
    started = asyncio.Event()

    async def wait() -> bool:
        started.set()
        return await waiter.wait(timeout)

    return started, asyncio.create_task(wait())


def running(
    waiter: Waiter, work: Awaitable[object], started: asyncio.Event | None = None
) -> tuple[asyncio.Event, asyncio.Task[bool]]:
    """A task in `waiter.run_unless_interrupted(work)`; once the event is set, the call is
    waiting. A coroutine `work` sets `started` itself (it runs after the call waits)."""
    ready = started if started is not None else asyncio.Event()

    async def run() -> bool:
        if started is None:
            ready.set()
        return await waiter.run_unless_interrupted(work)

    return ready, asyncio.create_task(run())


async def test_wake_ends_a_wait_that_is_under_way() -> None:
    wakeup = Wakeup()
    started, task = waiting(wakeup.waiter())
    await started.wait()
    assert not task.done()
    wakeup.wake()
    assert await task is True


async def test_wait_runs_out_after_its_timeout() -> None:
    waiter = Wakeup().waiter()
    assert await waiter.wait(0.01) is False
    assert await waiter.wait(0) is False
    assert await waiter.wait(-1) is False


async def test_a_wake_while_the_receive_looks_is_not_lost() -> None:
    wakeup = Wakeup()
    waiter = wakeup.waiter()
    wakeup.wake()  # e.g. a NOTIFY while the receive's query runs
    assert await waiter.wait(None) is True  # no limit: returns only because of that wake
    assert await waiter.wait(0) is False  # seen: the next wait waits again


async def test_a_wake_before_the_waiter_is_made_does_not_count() -> None:
    wakeup = Wakeup()
    wakeup.wake()
    assert await wakeup.waiter().wait(0) is False


async def test_wake_ends_every_wait() -> None:
    wakeup = Wakeup()
    tasks = [waiting(wakeup.waiter(), 60) for _ in range(3)]
    for started, _ in tasks:
        await started.wait()
    wakeup.wake()
    assert await asyncio.gather(*(task for _, task in tasks)) == [True, True, True]


async def test_interrupt_ends_waits_and_marks_only_the_waiters_made_before_it() -> None:
    wakeup = Wakeup()
    before = wakeup.waiter()
    started, task = waiting(before, None)
    await started.wait()
    wakeup.interrupt()
    assert await task is True
    assert before.interrupted
    after = wakeup.waiter()
    assert not after.interrupted
    assert await after.wait(0) is False


async def test_wake_is_no_interrupt() -> None:
    wakeup = Wakeup()
    waiter = wakeup.waiter()
    wakeup.wake()
    assert await waiter.wait(0) is True
    assert not waiter.interrupted


async def test_run_unless_interrupted_returns_what_finished() -> None:
    waiter = Wakeup().waiter()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_result(7)
    assert await waiter.run_unless_interrupted(future) is True
    assert future.result() == 7

    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await waiter.run_unless_interrupted(fails())


async def test_a_wake_does_not_end_run_unless_interrupted() -> None:
    wakeup = Wakeup()
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work(started: asyncio.Event) -> None:
        started.set()
        await gate

    started = asyncio.Event()
    _, task = running(wakeup.waiter(), work(started), started)
    await started.wait()
    wakeup.wake()
    gate.set_result(None)
    assert await task is True


async def test_interrupt_cancels_a_coroutine() -> None:
    wakeup = Wakeup()
    cancelled = asyncio.Event()

    async def long_poll(started: asyncio.Event) -> None:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()  # never done
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = asyncio.Event()
    _, task = running(wakeup.waiter(), long_poll(started), started)
    await started.wait()
    wakeup.interrupt()
    assert await task is False
    assert cancelled.is_set()  # and ended before run_unless_interrupted returned


async def test_interrupt_leaves_a_task_running_for_its_owner() -> None:
    wakeup = Wakeup()
    call: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    started, task = running(wakeup.waiter(), call)
    await started.wait()
    wakeup.interrupt()
    assert await task is False
    assert not call.done()  # still running: the next receive takes what it brings
    call.set_result(["message"])
    assert await wakeup.waiter().run_unless_interrupted(call) is True


async def test_work_that_finished_wins_over_an_interrupt_at_the_same_time() -> None:
    wakeup = Wakeup()
    waiter = wakeup.waiter()
    call: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    started, task = running(waiter, call)
    await started.wait()
    call.set_result(["message"])  # both before the waiting task runs again
    wakeup.interrupt()
    assert await task is True  # the message is not lost
    assert waiter.interrupted


async def test_an_interrupted_waiter_starts_no_work() -> None:
    wakeup = Wakeup()
    waiter = wakeup.waiter()
    wakeup.interrupt()
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    assert await waiter.run_unless_interrupted(work()) is False  # closed: no warning either
    assert not ran
    call: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert await waiter.run_unless_interrupted(call) is False
    assert not call.cancelled()


async def test_cancelling_run_unless_interrupted_cancels_its_work() -> None:
    call: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started, task = running(Wakeup().waiter(), call)
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.cancelled()


def test_one_wakeup_serves_one_event_loop_after_another() -> None:
    wakeup = Wakeup()  # made outside any loop, like a broker in a plain __init__

    async def wake_a_wait() -> bool:
        started, task = waiting(wakeup.waiter(), 60)
        await started.wait()
        wakeup.wake()
        return await task

    async def time_out() -> bool:
        return await wakeup.waiter().wait(0.01)  # leaves an unresolved signal in its loop

    assert asyncio.run(time_out()) is False
    assert asyncio.run(wake_a_wait()) is True
