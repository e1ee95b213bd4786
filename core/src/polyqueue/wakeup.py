"""`Wakeup`: how a broker wakes its waiting receives, and how `Broker.interrupt()` ends them.

Every broker's `receive` has the same shape: look for messages, and if there are none, wait
for something that may have made some ready (a NOTIFY, a publish, a nack), for a timeout, or
for an `interrupt()`, after which it returns `[]`. A broker owns one `Wakeup`; each `receive`
takes a `Waiter` from it when it starts::

    waiter = self._wakeup.waiter()
    while not self._closed and not waiter.interrupted:
        if messages := await self._look():
            return messages
        await waiter.wait(remaining)  # returns early on wake() or interrupt()
    return []

A wake that comes while the receive is looking (between two waits) is not lost: the next
`wait` returns at once. A receive that blocks inside a client library call instead races that
call against the interrupt with `Waiter.run_unless_interrupted`.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["Waiter", "Wakeup"]


class Wakeup:
    """Wakes the waiting receives of one broker; `interrupt()` also makes them return.

    Synchronous methods only need the event loop's thread (they are safe in a signal handler
    that runs on the loop). The object holds no loop until something waits, so a broker may
    make it in a plain `__init__`.
    """

    def __init__(self) -> None:
        self._wakes = 0
        self._interrupts = 0
        self._signal: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Something may be ready: every waiting receive looks again (a NOTIFY, a nack...)."""
        self._wakes += 1
        signal, self._signal = self._signal, None
        if signal is not None and not signal.done():
            signal.set_result(None)

    def interrupt(self) -> None:
        """Every receive whose waiter exists now returns `[]`: a waiting one at once, one mid
        round trip when that ends (with what it brought, if anything). Waiters made later are
        not affected."""
        self._interrupts += 1
        self.wake()

    def waiter(self) -> Waiter:
        """A waiter for one `receive`: make it when the receive starts."""
        return Waiter(self)

    @property
    def wakes(self) -> int:
        """How many `wake()`s and `interrupt()`s there were: a waiter compares it."""
        return self._wakes

    @property
    def interrupts(self) -> int:
        """How many `interrupt()`s there were: a waiter compares it."""
        return self._interrupts

    def changed(self) -> asyncio.Future[None]:
        """A future that the next `wake()` or `interrupt()` resolves (shared: never cancel it)."""
        signal = self._signal
        if signal is None or signal.done() or signal.get_loop() is not asyncio.get_running_loop():
            signal = self._signal = asyncio.get_running_loop().create_future()
        return signal


class Waiter:
    """One receive's view of a `Wakeup`: whether it was interrupted, and its waits."""

    __slots__ = ("_interrupts", "_seen", "_wakeup")

    def __init__(self, wakeup: Wakeup) -> None:
        self._wakeup = wakeup
        self._interrupts = wakeup.interrupts
        self._seen = wakeup.wakes

    @property
    def interrupted(self) -> bool:
        """Whether `interrupt()` was called since this waiter was made."""
        return self._wakeup.interrupts != self._interrupts

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a `wake()` or `interrupt()`, at most `timeout` seconds (None: no limit).

        Returns at once if one came since this waiter was made or since its last `wait`
        returned (so one that comes while the receive looks for messages is not missed).
        Whether it was woken; False when the time ran out.
        """
        wakeup = self._wakeup
        if wakeup.wakes == self._seen and (timeout is None or timeout > 0):
            limit = None if timeout is None or math.isinf(timeout) else timeout
            await asyncio.wait({wakeup.changed()}, timeout=limit)
        woken = wakeup.wakes != self._seen
        self._seen = wakeup.wakes
        return woken

    async def run_unless_interrupted(self, work: Awaitable[Any]) -> bool:
        """Await `work` unless this receive is interrupted first; whether `work` finished.

        For receives that block inside a client library call. A finished `work` that failed
        raises its error here; `work` finishing wins over an interrupt that came at the same
        time, so nothing it received is lost. Cancelling this call cancels `work`.

        On an interrupt, a coroutine (a wait of its own: a long poll, a doorbell) is cancelled,
        while a task or future is left running for its owner to collect what it brings later.
        """
        if self.interrupted:
            if asyncio.iscoroutine(work):
                work.close()  # never started: nothing to cancel, no "never awaited" warning
            return False
        owned = not isinstance(work, asyncio.Future)
        task = asyncio.ensure_future(work)
        try:
            while not task.done() and not self.interrupted:
                changed = self._wakeup.changed()
                await asyncio.wait({task, changed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            task.result()
            return True
        if owned:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # ended on its own meanwhile: what it raised is not wanted
        return False
