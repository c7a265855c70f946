"""``/v1/events/live`` served by a real uvicorn on loopback to a real WebSocket client: the
tenant's events as they happen, filtered, resumable from an event id, and nobody else's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.api.db import Database
from services.api.ingestion import EventIngestion
from shared.bus import Bus
from tests.api.conftest import ApiHarness, Tenancy, harness
from tests.api.eventing import eventually, publish
from tests.api.test_call_log import a_call


class LiveApi:
    def __init__(self, api: ApiHarness, server: uvicorn.Server, port: int) -> None:
        self.api = api
        self.server = server
        self.port = port

    def url(self, token: str | None, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {**params, **({"api_key": token} if token else {})}.items())
        return f"ws://127.0.0.1:{self.port}/v1/events/live" + (f"?{query}" if query else "")


@pytest.fixture
async def live(database: Database, bus: Bus) -> AsyncIterator[LiveApi]:
    await EventIngestion(database).start(bus)
    api = await harness(database, bus=bus)
    app = api.transport.app
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield LiveApi(api, server, sock.getsockname()[1])
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 10)
    await api.close()


async def receive(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    received = []
    async with asyncio.timeout(20):
        for _ in range(count):
            received.append(json.loads(await ws.recv()))
    return received


async def wait_for_consumers(bus: Bus, stream: str, count: int) -> None:
    async def probe() -> bool | None:
        return True if (await bus.js.stream_info(stream)).state.consumer_count >= count else None

    await eventually(probe, f"no live consumer on {stream}")


async def test_the_tenants_events_live_and_nobody_elses(live: LiveApi, bus: Bus) -> None:
    acme = await live.api.tenant("Acme", "acme.example")
    globex = await live.api.tenant("Globex", "globex.example")
    durable = (await bus.js.stream_info("CALL_EVENTS")).state.consumer_count
    async with connect(live.url(acme.token, types="call.answered,call.ended")) as ws:
        await wait_for_consumers(bus, "CALL_EVENTS", durable + 1)
        await publish(bus, *a_call(globex.tenant_id, "theirs", start=datetime.now(UTC)))
        mine = a_call(acme.tenant_id, "mine", start=datetime.now(UTC))
        await publish(bus, *mine)
        got = await receive(ws, 2)
    assert [(e["type"], e["call_id"], e["tenant_id"]) for e in got] == [
        ("call.answered", "mine", acme.tenant_id),
        ("call.ended", "mine", acme.tenant_id),
    ]
    assert got[1] == json.loads(mine[-1].model_dump_json())


async def test_resume_after_an_event_id(live: LiveApi, bus: Bus) -> None:
    acme = await live.api.tenant("Acme", "acme.example")
    events = a_call(acme.tenant_id, "resumed", start=datetime.now(UTC))
    await publish(bus, *events)

    async def taken_in() -> bool | None:
        response = await acme.client.get("/v1/calls/resumed")
        return True if response.status_code == 200 and len(response.json()["timeline"]) == 6 else None

    await eventually(taken_in, "the call was never taken in")
    # The client saw up to the answer; it gets everything after it, in order.
    async with connect(live.url(acme.token, since=str(events[2].id), types="call.*")) as ws:
        got = await receive(ws, 3)
    assert [e["id"] for e in got] == [str(e.id) for e in events[3:]]


@pytest.mark.parametrize(
    ("token", "params", "code", "field"),
    [
        (None, {}, 4401, None),
        ("edk_key_nope_nope", {}, 4401, None),
        ("ACME", {"types": "call.exploded"}, 4400, "types"),
        ("ACME", {"call_id": "a.b"}, 4400, "call_id"),
        ("ACME", {"since": "00000000-0000-0000-0000-000000000000"}, 4404, "since"),
    ],
)
async def test_refusals_say_why(
    live: LiveApi, token: str | None, params: dict[str, str], code: int, field: str | None
) -> None:
    acme = await live.api.tenant("Acme", "acme.example")
    async with connect(live.url(acme.token if token == "ACME" else token, **params)) as ws:
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert error["error"]
    assert error.get("field") == field
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


async def test_another_tenants_event_id_cannot_be_resumed_from(live: LiveApi, bus: Bus) -> None:
    acme = await live.api.tenant("Acme", "acme.example")
    globex: Tenancy = await live.api.tenant("Globex", "globex.example")
    events = a_call(acme.tenant_id, "private", start=datetime.now(UTC))
    await publish(bus, *events)

    async def taken_in() -> bool | None:
        return True if (await acme.client.get("/v1/calls/private")).status_code == 200 else None

    await eventually(taken_in, "never taken in")
    async with connect(live.url(globex.token, since=str(events[0].id))) as ws:
        error = json.loads(await ws.recv())
    assert error["field"] == "since"
