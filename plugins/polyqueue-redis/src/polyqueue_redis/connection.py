"""`RedisConnection`: the only module that talks to Redis (client, Lua scripts, pub/sub).

Imported by `RedisBroker.start()`, so that importing the plugin does not import `redis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from polyqueue.backoff import Backoff
from polyqueue.exceptions import BrokerError, BrokerUnavailableError
from polyqueue.redaction import redact_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from redis.commands.core import AsyncScript

    from polyqueue_redis.keys import KeySpace
    from polyqueue_redis.settings import RedisBrokerSettings

__all__ = ["Leased", "Received", "RedisConnection"]

log = logging.getLogger(__name__)

BROKER = "redis"
SCRIPTS = ("publish", "receive", "ack", "nack", "extend")
GUARD = "guard"
"""Prepended to every script: repairs garbage in the broker's keys instead of failing."""
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""Errors meaning "cannot reach the server" (BusyLoadingError and auth errors included)."""

PUBSUB_CLOSE_TIMEOUT = 1.0
SHOWN_DROPS = 5
"""Repairs named in one warning; the rest are counted."""

Entry = tuple[int, float, bytes]  # (priority, delay seconds, body)
Receipt = tuple[bytes, bytes]  # (message id, receipt): raw bytes, whatever is in Redis
Call = tuple[list[str], list[Any]]  # one script call's keys and arguments


@dataclass(frozen=True, slots=True)
class Leased:
    """One message leased by `receive`."""

    queue: str
    message_id: bytes
    receipt: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class Received:
    """What one receive round trip got, and when the next lease or delay runs out."""

    messages: list[Leased]
    next_due_in: float | None
    """Seconds until the earliest lease or delay of the asked queues ends (None: none)."""
    dropped: int = 0
    """Garbage entries this round trip dropped (what was behind them may be ready now)."""


def load_script(name: str) -> str:
    """The Lua source of `lua/<name>.lua` (package data), after the shared `lua/guard.lua`."""
    return _lua(GUARD) + _lua(name)


def _lua(name: str) -> str:
    return (resources.files("polyqueue_redis") / "lua" / f"{name}.lua").read_text("utf-8")


class RedisConnection:
    """A client with its pool, the broker's Lua scripts, and the doorbell subscriber."""

    def __init__(self, settings: RedisBrokerSettings, keys: KeySpace) -> None:
        self._settings = settings
        self._keys = keys
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    async def open(self) -> None:
        """Connect and check the server answers; `BrokerUnavailableError` naming the URL."""
        settings = self._settings
        client = Redis.from_url(
            settings.url,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.connect_timeout,
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 2),
            client_name="polyqueue",
        )
        try:
            with self.translate("connecting"):
                await client.ping()
        except BrokerError as exc:
            await client.aclose()
            raise BrokerUnavailableError(
                f"cannot reach Redis at {redact_url(settings.url)} (POLYQUEUE_REDIS_URL): {exc}",
                broker=BROKER,
            ) from exc.__cause__
        self._client = client
        self._scripts = {name: client.register_script(load_script(name)) for name in SCRIPTS}

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    def _require(self) -> Redis:
        if self._client is None:
            raise BrokerUnavailableError("the redis broker is closed", broker=BROKER)
        return self._client

    # -- commands -------------------------------------------------------------------------------

    async def publish(self, batches: Sequence[tuple[str, Sequence[Entry]]]) -> None:
        """Store each (queue, entries) batch with one Lua call."""
        await self._call_each("publish", [self._publish_call(q, e) for q, e in batches])

    def _publish_call(self, queue: str, entries: Sequence[Entry]) -> Call:
        """The publish script's keys and arguments for one queue's entries."""
        keys = self._keys.queue(queue)
        args: list[Any] = [keys.doorbell]
        for priority, delay, body in entries:
            args += (priority, _ms(delay), body)
        return [keys.ready, keys.delayed, keys.bodies, keys.priorities, keys.sequence], args

    async def receive(self, queues: Sequence[str], max_messages: int, lease: float) -> Received:
        """Lease up to `max_messages` from `queues` in one Lua call."""
        key_list: list[str] = []
        for queue in queues:
            k = self._keys.queue(queue)
            key_list += (k.ready, k.leased, k.delayed, k.bodies, k.receipts, k.priorities)
        token = uuid.uuid4().hex
        args = (max_messages, _ms(lease), self._settings.sweep_limit, token)
        with self.translate("receive"):
            reply = await self._scripts["receive"](key_list, args, client=self._require())
        return _received(queues, reply, token.encode())

    async def ack(self, groups: dict[str, list[Receipt]]) -> None:
        """Forget the leased messages whose receipts are current."""
        await self._per_queue(
            groups, "ack", lambda k: [k.leased, k.bodies, k.receipts, k.priorities]
        )

    async def nack(self, groups: dict[str, list[Receipt]], delay: float) -> None:
        """Give leased messages back, available after `delay` seconds."""
        await self._per_queue(
            groups,
            "nack",
            lambda k: [k.ready, k.leased, k.delayed, k.receipts, k.priorities],
            lambda k: [k.doorbell, _ms(delay)],
        )

    async def extend(self, groups: dict[str, list[Receipt]], seconds: float) -> None:
        """Move lease deadlines to `seconds` from now."""
        await self._per_queue(
            groups, "extend", lambda k: [k.leased, k.receipts], lambda _: [_ms(seconds)]
        )

    async def _per_queue(
        self,
        groups: dict[str, list[Receipt]],
        script: str,
        keys_of: Callable[[Any], list[str]],
        head_of: Callable[[Any], list[Any]] = lambda _: [],
    ) -> None:
        """Run `script` once per queue."""
        await self._call_each(
            script,
            [
                (keys_of(keys), head_of(keys) + [part for receipt in receipts for part in receipt])
                for keys, receipts in ((self._keys.queue(q), r) for q, r in groups.items())
            ],
        )

    async def _call_each(self, script: str, calls: Sequence[Call]) -> None:
        """Run `script` once per (keys, args): one call on its own, several in one pipeline
        (a pipeline of scripts first asks Redis whether they are loaded: a round trip more)."""
        if len(calls) == 1:
            with self.translate(script):
                replies = [await self._scripts[script](*calls[0], client=self._require())]
        elif calls:
            async with self._require().pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await self._scripts[script](keys, args, client=pipe)
                with self.translate(script):
                    replies = await pipe.execute()
        else:
            return
        for reply in replies:
            _log_dropped(script, reply[1])

    # -- doorbell -------------------------------------------------------------------------------

    async def listen(self, ring: Callable[[str], None], ring_all: Callable[[], None]) -> None:
        """Subscribe to every doorbell under the prefix and ring; reconnect with backoff."""
        backoff = Backoff(base=0.1, cap=5.0)
        while self._client is not None:
            try:
                await self._listen_once(ring, ring_all, backoff)
            except (RedisError, OSError) as exc:
                log.warning("redis doorbell subscriber disconnected, reconnecting: %s", exc)
            await asyncio.sleep(backoff.next_delay())

    async def _listen_once(
        self, ring: Callable[[str], None], ring_all: Callable[[], None], backoff: Backoff
    ) -> None:
        pubsub = self._require().pubsub()
        try:
            await pubsub.psubscribe(self._keys.doorbell_pattern)
            ring_all()  # bells rung while we were away are lost: everyone looks again
            backoff.reset()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None:
                    self._ring_channel(message["channel"], ring)
        finally:
            # Bounded: closing a subscriber cancelled mid-connect can wait on its lock forever.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), PUBSUB_CLOSE_TIMEOUT)  # type: ignore[no-untyped-call,unused-ignore]

    def _ring_channel(self, channel: bytes | str, ring: Callable[[str], None]) -> None:
        try:
            name = channel.decode() if isinstance(channel, bytes) else channel
        except UnicodeDecodeError:  # no queue of ours: a stray PUBLISH under the prefix
            log.debug("ignoring a doorbell on a channel that is not UTF-8: %r", channel)
            return
        queue = self._keys.queue_of_doorbell(name)
        if queue is not None:
            ring(queue)

    # -- errors ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def translate(self, operation: str) -> Iterator[None]:
        """Turn redis-py errors into `BrokerUnavailableError` / `BrokerError`."""
        try:
            yield
        except UNAVAILABLE as exc:
            raise BrokerUnavailableError(f"redis {operation}: {exc}", broker=BROKER) from exc
        except RedisError as exc:
            raise BrokerError(f"redis {operation}: {exc}", broker=BROKER) from exc


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000), 0)


def _received(queues: Sequence[str], reply: list[Any], token: bytes) -> Received:
    """Read the receive script's reply: header, a count per queue, then one string holding
    each message's id and body as `<length>:<bytes>`."""
    now, next_due, dropped = int(reply[0]), int(reply[1]), reply[2]
    _log_dropped("receive", dropped)
    at = 3 + len(queues)
    packed, offset = bytes(reply[at]), 0
    messages: list[Leased] = []
    for queue, count in zip(queues, reply[3:at], strict=True):
        for _ in range(int(count)):
            message_id, offset = _unpack(packed, offset)
            body, offset = _unpack(packed, offset)
            receipt = b"%s:%d" % (token, len(messages) + 1)
            messages.append(Leased(queue, message_id, receipt, body))
    due_in = None if next_due < 0 else max(next_due - now, 0) / 1000
    return Received(messages, due_in, len(dropped))


def _unpack(packed: bytes, offset: int) -> tuple[bytes, int]:
    """The `<length>:<bytes>` field at `offset` of `packed`, and the offset after it."""
    colon = packed.index(b":", offset)
    end = colon + 1 + int(packed[offset:colon])
    return packed[colon + 1 : end], end


def _log_dropped(operation: str, dropped: list[bytes]) -> None:
    """Warn about the garbage a script repaired (ids and values shown as raw bytes)."""
    if dropped:
        shown = "; ".join(repr(what) for what in dropped[:SHOWN_DROPS])
        more = f" (and {len(dropped) - SHOWN_DROPS} more)" if len(dropped) > SHOWN_DROPS else ""
        log.warning("redis %s dropped garbage from the broker's keys: %s%s", operation, shown, more)
