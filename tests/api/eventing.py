"""Helpers of the api tests that put events on a real nats-server and wait for their effect."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared import subjects
from shared.bus import Bus
from shared.events import EventEnvelope

T = TypeVar("T")

#: How long a test waits for an event to show; a bound on a wait, never an assertion about speed.
PATIENCE_S = 20.0


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``probe`` until it returns something other than None."""
    async with asyncio.timeout(PATIENCE_S):
        while True:
            value = await probe()
            if value is not None:
                return value
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover (the timeout raises first)


async def publish(bus: Bus, *events: EventEnvelope) -> None:
    for event in events:
        await bus.publish_event(event)


async def publish_again(bus: Bus, event: EventEnvelope) -> None:
    """The same event once more, under another message id: a redelivery the stream's
    de-duplication window cannot catch (a producer retrying after the window, a replayed backup)."""
    await bus.js.publish(subjects.event_subject(event), event.model_dump_json().encode())


async def publish_raw(bus: Bus, subject: str, payload: bytes) -> None:
    await bus.js.publish(subject, payload)
