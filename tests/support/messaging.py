"""SIP MESSAGE (RFC 3428) from the tests' own user agent, and the message events signaling sends."""

from __future__ import annotations

import asyncio
import secrets

import nats.errors

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Request, Response, make_response
from shared import subjects
from shared.bus import Bus
from shared.events import MessageEventEnvelope, parse_event
from tests.support.sip_client import SipClient

#: "Hello, how can I help?" in Georgian: three bytes a letter in UTF-8.
GEORGIAN = "გამარჯობა, როგორ შემიძლია დაგეხმაროთ? 🙂"


def send_message(
    client: SipClient,
    user: str,
    domain: str,
    password: str | None,
    target: str,
    body: bytes,
    *,
    content_type: str | None = "text/plain;charset=UTF-8",
    from_user: str | None = None,
) -> Response:
    """MESSAGE to ``target`` (a request URI) as ``user``, answering one 407 with ``password``."""
    base = [
        f"From: <sip:{from_user or user}@{domain}>;tag={secrets.token_hex(4)}",
        f"To: <{target}>",
        f"Call-ID: {secrets.token_hex(8)}",
    ]
    if content_type is not None:
        base.append(f"Content-Type: {content_type}")
    first = client.request("MESSAGE", target, [*base, "CSeq: 1 MESSAGE"], body)
    if first.status_code != 407 or password is None:
        return first
    answer = DigestClient(user, password=password).answer(
        first.headers.get_all("Proxy-Authenticate"), "MESSAGE", target
    )
    return client.request(
        "MESSAGE", target, [*base, "CSeq: 2 MESSAGE", f"Proxy-Authorization: {answer.value}"], body
    )


def receive_message(client: SipClient, status: int = 200) -> Request:
    """The next request the gateway sends ``client`` (a MESSAGE), answered with ``status``."""
    request = client.receive_message()
    assert isinstance(request, Request), request
    client.send(make_response(request, status).encode())
    return request


async def message_events(bus: Bus, count: int, timeout: float = 10.0) -> list[MessageEventEnvelope]:
    """The first ``count`` events of stream MESSAGE_EVENTS, in order."""
    sub = await bus.js.subscribe(
        subjects.message_events(), stream=subjects.MESSAGE_EVENTS.name, ordered_consumer=True
    )
    found: list[MessageEventEnvelope] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
                event = parse_event(msg.data)
                assert isinstance(event, MessageEventEnvelope), event
                found.append(event)
    finally:
        await sub.unsubscribe()
    return found
