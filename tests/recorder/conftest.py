"""Recorders in process, each with its own bus connection, as the service runtime gives them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast, get_args

import pytest

from services.recorder.service import RecorderService
from shared import subjects
from shared.bus import Bus
from shared.events import Event, RecordingEvent, parse_event
from shared.service import ServiceContext
from shared.settings import RecorderSettings
from tests.support.nats import NatsServer

StartRecorder = Callable[..., Awaitable[RecorderService]]


def recorder_settings(nats_url: str, directory: Path, instance: str, **overrides: object) -> RecorderSettings:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "instance_id": instance,
        "recordings_dir": directory,
        "health_port": 0,
        "lease_s": 2.0,
        "checkpoint_interval_s": 0.2,
        "storage_retry_s": 1.0,
    }
    values.update(overrides)
    return RecorderSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def start_recorder(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[StartRecorder]:
    started: list[tuple[RecorderService, Bus]] = []

    async def start(
        instance: str = "r1", directory: Path | None = None, **overrides: object
    ) -> RecorderService:
        settings = recorder_settings(
            nats_server.url, directory or tmp_path / "recordings", instance, **overrides
        )
        bus = await Bus.connect(nats_server.url, name=f"recorder-{instance}", timeout=10)
        service = RecorderService(settings)
        await service.start(ServiceContext(settings=settings, bus=bus))
        started.append((service, bus))
        return service

    yield start
    for service, bus in started:
        await service.stop()
        await bus.close()


class RecordingEvents:
    """Every recording event on the bus, in arrival order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Event()

    async def next(self, call_id: str, type_: str, timeout: float = 30.0) -> RecordingEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if getattr(event, "call_id", None) == call_id and event.type == type_:
                        assert isinstance(event, get_args(RecordingEvent))
                        return cast(RecordingEvent, event)
                self._arrived.clear()
                await self._arrived.wait()

    def of(self, call_id: str) -> list[str]:
        return [event.type for event in self.events if getattr(event, "call_id", None) == call_id]


@pytest.fixture
async def recording_events(bus: Bus) -> RecordingEvents:
    collected = RecordingEvents()

    async def on_msg(msg: object) -> None:
        collected.events.append(parse_event(msg.data))  # type: ignore[attr-defined]
        collected._arrived.set()

    await bus.nc.subscribe(subjects.recording_events(), cb=on_msg)
    await bus.nc.flush()
    return collected
