"""SIP MESSAGE through the signaling process on a real nats-server: agent to agent on UDP and TCP,
a message that waits for its agent to register (and one that waits too long), and bad input
answered with a clear status while nothing else is disturbed."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from shared import subjects
from shared.bus import Bus
from shared.events import (
    Direction,
    MessageDelivered,
    MessageFailed,
    MessageFailure,
    MessageSent,
)
from shared.records import agent_key, agent_record
from tests.support.messaging import GEORGIAN, message_events, receive_message, send_message
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sip_client import SipClient

DOMAIN = "acme.test"


@dataclass
class Signaling:
    bus: Bus
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None

    def client(self, transport: str = "udp", local_ip: str = "127.0.0.1", timeout: float = 5.0) -> SipClient:
        port = int(self.env[f"ECHODESK_SIGNALING_SIP_{transport.upper()}_PORT"])
        return SipClient(("127.0.0.1", port), transport, timeout=timeout, local_ip=local_ip)

    async def put_agent(self, user: str) -> None:
        record = agent_record(
            tenant_id="acme",
            agent_id=f"agent-{user}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=f"secret-{user}",
        )
        kv = await self.bus.bucket(subjects.AGENTS_KV)
        await kv.put(agent_key(DOMAIN, user), record.model_dump_json().encode())


@asynccontextmanager
async def _signaling(nats_server: NatsServer, settings: dict[str, str]) -> AsyncIterator[Signaling]:
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    env = {
        **free_ports_env("signaling"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_LOG_JSON": "true",
        **settings,
    }
    stack = Signaling(bus, env)
    for user in ("100", "101", "102"):
        await stack.put_agent(user)
    process = stack.process = await asyncio.to_thread(start_service, "signaling", env)
    try:
        yield stack
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, None, 30)
        await bus.close()
        assert process.returncode == 0, output
        assert "Traceback" not in output, output


@pytest.fixture
async def signaling(nats_server: NatsServer) -> AsyncIterator[Signaling]:
    async with _signaling(nats_server, {"ECHODESK_SIGNALING_MESSAGE_MAX_BYTES": "512"}) as stack:
        yield stack


@pytest.mark.parametrize(("sender_transport", "recipient_transport"), [("udp", "tcp"), ("tcp", "udp")])
async def test_agent_to_agent_georgian_byte_for_byte(
    signaling: Signaling, sender_transport: str, recipient_transport: str
) -> None:
    sender = signaling.client(sender_transport)
    recipient = signaling.client(recipient_transport)
    ok = await asyncio.to_thread(recipient.register, "101", DOMAIN, "secret-101")
    assert ok.status_code == 200
    body = GEORGIAN.encode()
    receiving = asyncio.create_task(asyncio.to_thread(receive_message, recipient))
    answer = await asyncio.to_thread(
        send_message, sender, "100", DOMAIN, "secret-100", f"sip:101@{DOMAIN}", body
    )
    delivered = await receiving
    assert answer.status_code == 200
    assert delivered.method == "MESSAGE"
    assert delivered.body == body
    # MIME's default charset for text is US-ASCII (RFC 2046 4.1.2): the gateway names UTF-8.
    assert delivered.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert delivered.headers.get("Contact") is None  # RFC 3428 4: MESSAGE makes no dialog
    assert "sip:100@acme.test" in (delivered.headers.get("From") or "")
    sent, done = await message_events(signaling.bus, 2)
    assert isinstance(sent, MessageSent)
    assert isinstance(done, MessageDelivered)
    assert sent.message_id == done.message_id
    assert sent.data.text == GEORGIAN
    assert sent.data.size_bytes == len(body)
    assert (sent.data.direction, sent.data.from_number, sent.data.to_number) == (
        Direction.INTERNAL,
        "100",
        "101",
    )
    assert (sent.agent_id, done.agent_id, sent.conversation_id) == ("agent-100", "agent-101", None)
    assert (done.data.sip_status, done.data.queued) == (200, False)
    sender.close()
    recipient.close()


async def test_message_waits_until_the_agent_registers(signaling: Signaling) -> None:
    sender = signaling.client("udp")
    answer = await asyncio.to_thread(
        send_message, sender, "100", DOMAIN, "secret-100", f"sip:102@{DOMAIN}", GEORGIAN.encode()
    )
    assert answer.status_code == 202, answer.reason
    [sent] = await message_events(signaling.bus, 1)
    assert isinstance(sent, MessageSent)
    recipient = signaling.client("tcp")
    ok = await asyncio.to_thread(recipient.register, "102", DOMAIN, "secret-102")
    assert ok.status_code == 200
    delivered = await asyncio.to_thread(receive_message, recipient)
    assert delivered.body == GEORGIAN.encode()
    _, done = await message_events(signaling.bus, 2)
    assert isinstance(done, MessageDelivered)
    assert (done.message_id, done.agent_id, done.data.queued) == (sent.message_id, "agent-102", True)
    # Delivered once: registering again from another phone brings nothing more.
    other = signaling.client("udp")
    assert (await asyncio.to_thread(other.register, "102", DOMAIN, "secret-102")).status_code == 200
    other.sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(other.receive_message)
    for client in (sender, recipient, other):
        client.close()


async def test_bad_messages_are_answered_and_disturb_nothing(signaling: Signaling) -> None:
    recipient = signaling.client("tcp")
    assert (await asyncio.to_thread(recipient.register, "101", DOMAIN, "secret-101")).status_code == 200
    sender = signaling.client("udp")
    target = f"sip:101@{DOMAIN}"

    async def send(body: bytes, **kwargs: object) -> tuple[int, str, str | None]:
        response = await asyncio.to_thread(
            send_message,
            sender,
            "100",
            DOMAIN,
            "secret-100",
            target,
            body,
            **kwargs,  # type: ignore[arg-type]
        )
        return response.status_code, response.reason, response.headers.get("Accept")

    stranger = signaling.client("udp", local_ip="127.0.0.9")
    unknown = await asyncio.to_thread(
        send_message, stranger, "+995555123456", "carrier.example", None, target, b"hi"
    )
    assert (unknown.status_code, unknown.reason) == (
        403,
        "Unknown source: not a trunk's carrier nor an agent's domain",
    )
    assert await send(b"x" * 513) == (413, "Message body too large: 513 bytes, at most 512", None)
    status, _, accept = await send(b'{"text": "hi"}', content_type="application/json")
    assert (status, accept) == (415, "message/cpim, text/plain")
    status, reason, accept = await send(b"hi", content_type="text/plain;charset=ISO-8859-5")
    assert (status, reason, accept) == (
        415,
        "Unsupported charset iso-8859-5",
        "text/plain;charset=UTF-8, message/cpim",
    )
    assert await send("გა".encode() + b"\xff\xfe") == (
        400,
        "Invalid UTF-8 in the body at byte 6: invalid start byte",
        None,
    )
    assert (await send(b""))[0:2] == (400, "Empty message body")
    assert (await send(b"hi", content_type=None))[0] == 400
    receiving = asyncio.create_task(asyncio.to_thread(receive_message, recipient))
    assert (await send(b"to somebody"))[0] == 200
    missing = await asyncio.to_thread(
        send_message, sender, "100", DOMAIN, "secret-100", f"sip:555@{DOMAIN}", b"hi"
    )
    assert (missing.status_code, missing.reason) == (404, "no agent has extension 555")
    # Through all of that the recipient got only the one good message.
    assert (await receiving).body == b"to somebody"
    recipient.sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(recipient.receive_message)
    events = await message_events(signaling.bus, 4)
    assert [type(e).__name__ for e in events] == [
        "MessageSent",
        "MessageDelivered",
        "MessageSent",
        "MessageFailed",
    ]
    refused = events[3]
    assert isinstance(refused, MessageFailed)
    assert (refused.data.cause, refused.data.sip_status) == (MessageFailure.NO_ROUTE, 404)
    for client in (recipient, sender, stranger):
        client.close()


async def test_recipient_refusal_fails_the_message(signaling: Signaling) -> None:
    recipient = signaling.client("udp")
    assert (await asyncio.to_thread(recipient.register, "101", DOMAIN, "secret-101")).status_code == 200
    sender = signaling.client("tcp")
    receiving = asyncio.create_task(asyncio.to_thread(receive_message, recipient, 488))
    answer = await asyncio.to_thread(
        send_message, sender, "100", DOMAIN, "secret-100", f"sip:101@{DOMAIN}", b"hello"
    )
    await receiving
    assert answer.status_code == 488
    _, failed = await message_events(signaling.bus, 2)
    assert isinstance(failed, MessageFailed)
    assert (failed.data.cause, failed.data.sip_status) == (MessageFailure.REJECTED, 488)
    recipient.close()
    sender.close()


async def test_message_that_waits_too_long_fails_as_expired(nats_server: NatsServer) -> None:
    async with _signaling(nats_server, {"ECHODESK_SIGNALING_MESSAGE_PENDING_TTL_S": "1"}) as stack:
        sender = stack.client("udp")
        answer = await asyncio.to_thread(
            send_message, sender, "100", DOMAIN, "secret-100", f"sip:102@{DOMAIN}", b"call me back"
        )
        assert answer.status_code == 202
        sent, failed = await message_events(stack.bus, 2, timeout=15)
        assert isinstance(failed, MessageFailed)
        assert failed.message_id == sent.message_id
        assert failed.data.cause is MessageFailure.EXPIRED
        assert failed.data.waited_s >= 1
        # Gone from the store: registering now brings nothing.
        recipient = stack.client("udp")
        assert (await asyncio.to_thread(recipient.register, "102", DOMAIN, "secret-102")).status_code == 200
        recipient.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(recipient.receive_message)
        sender.close()
        recipient.close()


async def test_a_message_reaches_an_agent_registered_on_another_instance(nats_server: NatsServer) -> None:
    async with (
        _signaling(nats_server, {"ECHODESK_INSTANCE_ID": "signaling-a"}) as first,
        _signaling(nats_server, {"ECHODESK_INSTANCE_ID": "signaling-b"}) as second,
    ):
        recipient = second.client("tcp")
        assert (await asyncio.to_thread(recipient.register, "101", DOMAIN, "secret-101")).status_code == 200
        receiving = asyncio.create_task(asyncio.to_thread(receive_message, recipient))
        sender = first.client("udp")
        answer = await asyncio.to_thread(
            send_message, sender, "100", DOMAIN, "secret-100", f"sip:101@{DOMAIN}", GEORGIAN.encode()
        )
        # The first instance has no phone of 101's: it keeps the message, the second delivers it.
        assert answer.status_code == 202
        assert (await receiving).body == GEORGIAN.encode()
        sent, delivered = await message_events(first.bus, 2)
        assert isinstance(delivered, MessageDelivered)
        assert (delivered.message_id, delivered.agent_id, delivered.data.queued) == (
            sent.message_id,
            "agent-101",
            True,
        )
        # Delivered once, and gone from the store: 101 registering again brings nothing.
        again = second.client("udp")
        assert (await asyncio.to_thread(again.register, "101", DOMAIN, "secret-101")).status_code == 200
        again.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(again.receive_message)
        for client in (recipient, sender, again):
            client.close()
