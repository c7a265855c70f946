"""The bus against a real nats-server: JetStream round trips, de-duplication, redelivery,
dead letters, request/reply errors, idempotent provisioning, and surviving a server restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats.js.errors
import pytest
from pydantic import BaseModel

from shared import subjects
from shared.bus import (
    HDR_DELIVERIES,
    HDR_ERROR,
    HDR_ORIGINAL_SUBJECT,
    Bus,
    Delivery,
    NoResponders,
    Rejected,
    RemoteError,
    RequestTimeout,
)
from shared.events import CallRinging, Event
from tests.support.nats import NatsServer


def ringing(call_id: str = "c-1", sequence: int = 1) -> CallRinging:
    return CallRinging(tenant_id="acme", call_id=call_id, sequence=sequence)


class Collector:
    """Handler that records deliveries and can be told to fail the first N attempts."""

    def __init__(self, fail_first: int = 0, fail_always: bool = False) -> None:
        self.fail_first = fail_first
        self.fail_always = fail_always
        self.attempts: list[tuple[str, int]] = []
        self.handled: list[Event] = []
        self.changed = asyncio.Event()

    async def __call__(self, delivery: Delivery[Event]) -> None:
        self.attempts.append((delivery.value.type, delivery.attempt))
        self.changed.set()
        if self.fail_always or len(self.attempts) <= self.fail_first:
            raise RuntimeError("handler says no")
        self.handled.append(delivery.value)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.handled) < count:
                self.changed.clear()
                await self.changed.wait()


async def dead_letters(bus: Bus, expected: int, timeout: float = 10.0) -> list[nats.aio.msg.Msg]:
    """Read ``expected`` messages from the dead-letter stream (waiting for them to arrive)."""
    sub = await bus.js.pull_subscribe(subjects.dead_letter(), stream=subjects.DEAD_LETTERS.name)
    found: list[nats.aio.msg.Msg] = []
    async with asyncio.timeout(timeout):
        while len(found) < expected:
            with contextlib.suppress(nats.errors.TimeoutError):
                found += await sub.fetch(expected - len(found), timeout=0.5)
    await sub.unsubscribe()
    return found


async def test_event_round_trip_through_jetstream(bus: Bus) -> None:
    collector = Collector()
    await bus.consume_events(subjects.CALL_EVENTS, "test-consumer", collector)
    sent = [ringing(sequence=i) for i in range(5)]
    for event in sent:
        assert await bus.publish_event(event)
    await collector.wait_for(5)
    assert collector.handled == sent


async def test_same_event_id_is_stored_once(bus: Bus) -> None:
    event = ringing()
    assert await bus.publish_event(event) is True
    assert await bus.publish_event(event) is False  # a producer's retry after a lost ack
    info = await bus.js.stream_info(subjects.CALL_EVENTS.name)
    assert info.state.messages == 1


async def test_failed_handler_gets_the_message_again(bus: Bus) -> None:
    collector = Collector(fail_first=2)
    await bus.consume_events(subjects.CALL_EVENTS, "flaky", collector, max_deliver=5)
    await bus.publish_event(ringing())
    await collector.wait_for(1)
    assert [attempt for _, attempt in collector.attempts] == [1, 2, 3]
    info = await bus.js.stream_info(subjects.DEAD_LETTERS.name)
    assert info.state.messages == 0


async def test_message_that_keeps_failing_is_dead_lettered_and_the_next_one_flows(bus: Bus) -> None:
    poisoned = ringing(call_id="poison")

    class PoisonAware(Collector):
        async def __call__(self, delivery: Delivery[Event]) -> None:
            self.fail_always = delivery.value.id == poisoned.id
            await super().__call__(delivery)

    collector = PoisonAware()
    await bus.consume_events(subjects.CALL_EVENTS, "strict", collector, max_deliver=3)
    await bus.publish_event(poisoned)
    healthy = ringing(call_id="healthy")
    await bus.publish_event(healthy)
    await collector.wait_for(1)
    assert collector.handled == [healthy]
    [letter] = await dead_letters(bus, 1)
    assert letter.subject == subjects.dead_letter("CALL_EVENTS", "strict")
    assert letter.headers is not None
    assert letter.headers[HDR_ORIGINAL_SUBJECT] == "calls.events.acme.poison"
    assert letter.headers[HDR_DELIVERIES] == "3"
    assert "handler says no" in letter.headers[HDR_ERROR]
    assert [a for _, a in collector.attempts if a].count(1) >= 1


async def test_malformed_message_is_dead_lettered_at_once(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    collector = Collector()
    await bus.consume_events(subjects.CALL_EVENTS, "reader", collector)
    await bus.js.publish("calls.events.acme.c-9", b'{"type": "call.ringing", "tenant_id": "acme"}')
    await bus.js.publish("calls.events.acme.c-9", b"\x00\xffnot json")
    after = ringing(call_id="c-9")
    await bus.publish_event(after)
    await collector.wait_for(1)
    letters = await dead_letters(bus, 2)
    assert collector.handled == [after]
    assert collector.attempts == [("call.ringing", 1)]
    errors = [m.headers[HDR_ERROR] for m in letters if m.headers]
    assert any("call_id" in e and "Field required" in e for e in errors)
    assert any("Invalid JSON" in e or "json_invalid" in e for e in errors)


class Ping(BaseModel):
    text: str
    delay: float = 0.0


class Pong(BaseModel):
    text: str


@pytest.fixture
async def echo_server(bus: Bus) -> AsyncIterator[None]:
    async def handle(ping: Ping) -> Pong:
        if ping.text == "refuse":
            raise Rejected("busy", "no capacity left")
        if ping.text == "crash":
            raise ZeroDivisionError("oops")
        await asyncio.sleep(ping.delay)
        return Pong(text=ping.text.upper())

    sub = await bus.serve("test.echo", Ping, handle, queue="echo")
    yield
    await sub.unsubscribe()


@pytest.mark.usefixtures("echo_server")
async def test_request_reply_is_typed(bus: Bus) -> None:
    reply = await bus.request("test.echo", Ping(text="hello"), Pong)
    assert reply == Pong(text="HELLO")


@pytest.mark.usefixtures("echo_server")
async def test_request_errors_are_typed(bus: Bus) -> None:
    with pytest.raises(RemoteError) as refused:
        await bus.request("test.echo", Ping(text="refuse"), Pong)
    assert (refused.value.code, refused.value.message) == ("busy", "no capacity left")
    with pytest.raises(RemoteError) as crashed:
        await bus.request("test.echo", Ping(text="crash"), Pong)
    assert crashed.value.code == "internal"
    with pytest.raises(RequestTimeout):
        await bus.request("test.echo", Ping(text="slow", delay=1.0), Pong, timeout=0.2)
    with pytest.raises(NoResponders):
        await bus.request("test.nobody", Ping(text="x"), Pong, timeout=1.0)
    # The responder survived all of it.
    assert await bus.request("test.echo", Ping(text="still here"), Pong) == Pong(text="STILL HERE")


@pytest.mark.usefixtures("echo_server")
async def test_invalid_request_gets_an_error_and_a_dead_letter(bus: Bus) -> None:
    class Wrong(BaseModel):
        number: int

    with pytest.raises(RemoteError) as caught:
        await bus.request("test.echo", Wrong(number=1), Pong)
    assert caught.value.code == "invalid_request"
    assert "text" in caught.value.message
    [letter] = await dead_letters(bus, 1)
    assert letter.headers is not None
    assert letter.headers[HDR_ORIGINAL_SUBJECT] == "test.echo"


async def test_invalid_core_message_is_dead_lettered_and_the_subscription_lives(bus: Bus) -> None:
    got: list[Pong] = []
    arrived = asyncio.Event()

    async def on_pong(pong: Pong, _subject: str) -> None:
        got.append(pong)
        arrived.set()

    await bus.subscribe("test.pongs", Pong, on_pong)
    await bus.nc.publish("test.pongs", b"{{{")
    await bus.publish("test.pongs", Pong(text="ok"))
    await asyncio.wait_for(arrived.wait(), 5)
    assert got == [Pong(text="ok")]
    [letter] = await dead_letters(bus, 1)
    assert letter.subject == subjects.dead_letter("core", "test")


async def test_provisioning_is_idempotent_and_concurrent(nats_server: NatsServer) -> None:
    buses = [await Bus.connect(nats_server.url, name=f"svc{i}", timeout=5) for i in range(3)]
    try:
        await asyncio.gather(*(b.ensure_streams() for b in buses), *(b.ensure_buckets() for b in buses))
        await buses[0].ensure_streams()
        names = {s.config.name for s in await buses[0].js.streams_info()}
        assert {spec.name for spec in subjects.STREAMS} <= names
        kv = await buses[1].bucket(subjects.AGENTS_KV)
        await kv.put("acme.a-1", b"{}")
        assert (await (await buses[2].bucket(subjects.AGENTS_KV)).get("acme.a-1")).value == b"{}"
    finally:
        for b in buses:
            await b.close()


async def test_consumer_survives_a_server_restart(bus: Bus, nats_server: NatsServer) -> None:
    collector = Collector()
    await bus.consume_events(subjects.CALL_EVENTS, "durable", collector)
    await bus.publish_event(ringing(sequence=1))
    await collector.wait_for(1)
    await asyncio.to_thread(nats_server.restart, 0.5)
    async with asyncio.timeout(15):
        while True:
            try:
                await bus.publish_event(ringing(sequence=2))
                break
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
                await asyncio.sleep(0.2)
    await collector.wait_for(2, timeout=15)
    assert [e.sequence for e in collector.handled] == [1, 2]  # type: ignore[union-attr]


async def test_connect_gives_up_with_a_clear_error() -> None:
    from shared.bus import BusError
    from shared.supervisor import free_port

    with pytest.raises(BusError, match="cannot reach NATS"):
        await Bus.connect(f"nats://127.0.0.1:{free_port()}", name="lonely", timeout=0.5)
