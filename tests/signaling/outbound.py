"""Building blocks of the outbound call's unit tests: an agent's INVITE, a media session, the call,
and the carrier's scripted answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.signaling.b2bua.call import (
    AnswerCaller,
    CarrierTarget,
    Command,
    LegAddress,
    OutboundCall,
    Publish,
    SendToCarrier,
    StartMedia,
)
from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Request, Response, make_response, parse_message
from shared.events import CallEnded
from shared.media import SessionCreated, SessionKind

AGENT_INVITE = (
    "INVITE sip:555123456@acme.test SIP/2.0\r\n"
    "Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bKagent1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:100@acme.test>;tag=browser\r\n"
    "To: <sip:555123456@acme.test>\r\n"
    "Call-ID: sipjs-call-1\r\n"
    "CSeq: 2 INVITE\r\n"
    "Contact: <sip:x7k2@a1b2.invalid;transport=ws;ob>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 9\r\n\r\n"
    "v=0 offer"
)
CREATED = SessionCreated(
    worker_id="w1", session_id="s1", agent_sdp="v=0 answer-for-agent", customer_sdp="v=0 offer-rtp"
)


def new_call(credentials: DigestClient | None = None) -> OutboundCall:
    invite = parse_message(AGENT_INVITE.encode())
    assert isinstance(invite, Request)
    return OutboundCall(
        call_id="c1",
        tenant_id="acme",
        agent_id="a100",
        agent_extension="100",
        customer_number="+995555123456",
        agent_invite=invite,
        agent_address=LegAddress("gw.acme.test:8089", "<sip:gw@gw.acme.test:8089;transport=wss>", "wss"),
        carrier_address=LegAddress("203.0.113.1:5060", "<sip:gw@203.0.113.1:5060>", "udp"),
        target=CarrierTarget("trunk-1", "carrier.test", "trunk1", credentials),
    )


def only(commands: Sequence[Command], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def carrier_says(
    invite: Request, code: int, *, body: bytes = b"", contact: str | None = None, **extra: str
) -> Response:
    response = make_response(invite, code, to_tag="carrier-tag", body=body)
    if contact:
        response.headers.add("Contact", contact)
    if body:
        response.headers.add("Content-Type", "application/sdp")
    for name, value in extra.items():
        response.headers.add(name.replace("_", "-"), value)
    return response


def dial(call: OutboundCall) -> Request:
    commands = call.start(0.0)
    assert [type(c) for c in commands] == [AnswerCaller, Publish, StartMedia]
    assert only(commands, AnswerCaller)[0].response.status_code == 100
    [start] = only(commands, StartMedia)
    assert start.request.kind is SessionKind.WEBRTC_RTP
    assert start.request.agent_offer == "v=0 offer"
    [invite] = only(call.media_ready(CREATED, 0.1), SendToCarrier)
    return invite.request


def ended(commands: Sequence[Command]) -> CallEnded:
    [event] = [c.event for c in only(commands, Publish) if isinstance(c.event, CallEnded)]
    return event
