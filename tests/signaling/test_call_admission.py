"""Toll fraud and refusals: no INVITE reaches a carrier unless an authenticated agent may place it."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import pytest

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Response
from shared import subjects
from shared.bus import Bus
from shared.events import CallEnded, EndCause, parse_event
from shared.records import TrunkRecord, agent_key, agent_record, trunk_key
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sip_client import SipClient

DOMAIN = "acme.test"
OFFER = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


@dataclass
class Gateway:
    bus: Bus
    sip: tuple[str, int]
    carrier: socket.socket

    def invite(self, number: str, password: str | None, *, user: str = "100") -> Response:
        client = SipClient(self.sip)
        call_id = secrets.token_hex(6)
        headers = [
            f"From: <sip:{user}@{DOMAIN}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{number}@{DOMAIN}>",
            f"Call-ID: {call_id}",
            f"Contact: <sip:{user}@127.0.0.1:{client.port}>",
            "Content-Type: application/sdp",
        ]
        uri = f"sip:{number}@{DOMAIN}"
        first = client.request("INVITE", uri, [*headers, "CSeq: 1 INVITE"], OFFER)
        if first.status_code != 407 or password is None:
            client.close()
            return first
        client.send(_ack(first, uri, client.port))
        answer = DigestClient(user, password=password).answer(
            first.headers.get_all("Proxy-Authenticate"), "INVITE", uri
        )
        second = client.request(
            "INVITE", uri, [*headers, "CSeq: 2 INVITE", f"Proxy-Authorization: {answer.value}"], OFFER
        )
        client.close()
        return second

    def carrier_received(self) -> bytes:
        self.carrier.settimeout(0.5)
        try:
            return self.carrier.recv(65535)
        except TimeoutError:
            return b""


def _ack(response: Response, uri: str, port: int) -> bytes:
    via = response.headers.get_all("Via")[0]
    return (
        f"ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {response.headers.get('From')}\r\n"
        f"To: {response.headers.get('To')}\r\nCall-ID: {response.call_id}\r\nCSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
async def gateway(nats_server: NatsServer) -> AsyncIterator[Gateway]:
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    carrier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    carrier.bind(("127.0.0.1", 0))
    agents = await bus.bucket(subjects.AGENTS_KV)
    record = agent_record(
        tenant_id="acme",
        agent_id="a100",
        extension="100",
        sip_username="100",
        domain=DOMAIN,
        password="pw-100",
    )
    await agents.put(agent_key(DOMAIN, "100"), record.model_dump_json().encode())
    trunks = await bus.bucket(subjects.TRUNKS_KV)
    trunk = TrunkRecord(
        tenant_id="acme",
        trunk_id="geo",
        name="Geo",
        sip_server="127.0.0.1",
        sip_port=carrier.getsockname()[1],
        registers=False,
        is_default=True,
        allowed_prefixes=("+995",),
    )
    await trunks.put(trunk_key("acme", "geo"), trunk.model_dump_json().encode())
    env = {**free_ports_env("signaling"), "ECHODESK_NATS_URL": nats_server.url}
    process = await asyncio.to_thread(start_service, "signaling", env)
    gateway = Gateway(bus, ("127.0.0.1", int(env["ECHODESK_SIGNALING_SIP_UDP_PORT"])), carrier)
    try:
        yield gateway
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, None, 30)
        carrier.close()
        await bus.close()
        assert process.returncode == 0, output
        assert "Traceback" not in output, output


async def ended_events(bus: Bus, count: int) -> list[CallEnded]:
    sub = await bus.js.pull_subscribe(subjects.call_events(), stream=subjects.CALL_EVENTS.name)
    found: list[CallEnded] = []
    async with asyncio.timeout(10):
        while len(found) < count:
            try:
                for msg in await sub.fetch(10, timeout=0.5):
                    event = parse_event(msg.data)
                    if isinstance(event, CallEnded):
                        found.append(event)
            except nats.errors.TimeoutError:
                continue
    return found


def drain_keepalives(gateway: Gateway) -> bytes:
    """What reached the carrier, ignoring the trunk's OPTIONS keep-alives."""
    received = b""
    while chunk := gateway.carrier_received():
        if not chunk.startswith(b"OPTIONS "):
            received += chunk
    return received


async def test_unauthenticated_invite_is_challenged_and_never_reaches_the_carrier(gateway: Gateway) -> None:
    challenged = await asyncio.to_thread(gateway.invite, "555123456", None)
    assert challenged.status_code == 407
    assert challenged.headers.get_all("Proxy-Authenticate")
    wrong = await asyncio.to_thread(gateway.invite, "555123456", "guess")
    assert wrong.status_code == 407
    assert b"INVITE" not in await asyncio.to_thread(drain_keepalives, gateway)


async def test_dial_plan_refusal_is_explained(gateway: Gateway) -> None:
    refused = await asyncio.to_thread(gateway.invite, "+1 900 555 0123".replace(" ", ""), "pw-100")
    assert refused.status_code == 403
    assert "no trunk may call +19005550123" in refused.reason
    [ended] = await ended_events(gateway.bus, 1)
    assert ended.data.cause is EndCause.DIALPLAN_REFUSED
    assert ended.data.message.startswith("Call not allowed: no trunk may call")
    assert b"INVITE" not in await asyncio.to_thread(drain_keepalives, gateway)


async def test_no_media_worker_fails_the_call_before_the_carrier_is_bothered(gateway: Gateway) -> None:
    failed = await asyncio.to_thread(gateway.invite, "555123456", "pw-100")
    assert failed.status_code == 503
    [ended] = await ended_events(gateway.bus, 1)
    assert (ended.data.cause, ended.data.sip_status) == (EndCause.MEDIA_FAILURE, 503)
    assert b"INVITE" not in await asyncio.to_thread(drain_keepalives, gateway)
