"""Asking a media worker for a session, as signaling does, from tests."""

from __future__ import annotations

import asyncio

from shared import subjects
from shared.bus import Bus, NoResponders
from shared.media import CreateSession, SessionCreated


async def create_session(bus: Bus, request: CreateSession, timeout: float = 5.0) -> SessionCreated:
    """``media.session.create``, asked again for a moment while nobody serves it.

    Seen about once in ten runs: the first request right after a worker joined its queue group finds
    no responder although the worker flushed its subscription; a moment later it always finds it.
    Signaling meets the same at a worker's start as a refused call (503), which a test of something
    else must not trip over."""
    for attempt in range(5):
        try:
            return await bus.request(
                subjects.media_session_create(), request, SessionCreated, timeout=timeout
            )
        except NoResponders:
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


__all__ = ["create_session"]
