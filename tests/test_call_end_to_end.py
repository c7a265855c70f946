"""A whole outbound call through the gateway: a desk-phone agent (our test UA with an RTP endpoint)
calls a customer; signaling authenticates it, asks a real media worker over a real nats-server,
dials sipp playing the carrier (which answers and echoes the audio), and the agent hears its own
1 kHz tone come back through worker, carrier and worker again. Then the agent hangs up."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import pytest

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Response
from shared import subjects
from shared.bus import Bus
from shared.events import CallEventEnvelope, CallStatus, Party, parse_event
from shared.records import TrunkRecord, agent_key, agent_record, trunk_key
from shared.supervisor import free_port
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sip_client import SipClient
from tests.support.sipp import Sipp, require_sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

DOMAIN = "acme.test"


@dataclass
class Stack:
    bus: Bus
    sip: tuple[str, int]


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Stack, Sipp]]:
    require_sipp()
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    media_port = free_port()
    carrier = Sipp(
        "carrier_answer_uas",
        tmp_path,
        calls=2,  # the trunk's first OPTIONS probe, then the call
        timeout=60,
        recv_timeout=30,
        extra_args=("-rtp_echo", "-mp", str(media_port), "-mi", "127.0.0.1"),
    )
    await carrier.start_async()
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
        sip_port=carrier.port,
        registers=False,
        is_default=True,
        keepalive_s=3600,
    )
    await trunks.put(trunk_key("acme", "geo"), trunk.model_dump_json().encode())
    base = {"ECHODESK_NATS_URL": nats_server.url, "ECHODESK_LOG_JSON": "true"}
    rtp_low = free_port() & ~1
    media_env = {
        **base,
        **free_ports_env("media"),
        "ECHODESK_MEDIA_BIND_ADDRESS": "127.0.0.1",
        "ECHODESK_MEDIA_PUBLIC_ADDRESS": "127.0.0.1",
        "ECHODESK_MEDIA_RTP_PORT_MIN": str(rtp_low),
        "ECHODESK_MEDIA_RTP_PORT_MAX": str(rtp_low + 40),
        "ECHODESK_INSTANCE_ID": "worker-1",
    }
    signaling_env = {
        **base,
        **free_ports_env("signaling"),
        "ECHODESK_SIGNALING_SIP_HOST": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_PUBLIC_HOST": "127.0.0.1",
    }
    media = await asyncio.to_thread(start_service, "media", media_env)
    signaling = await asyncio.to_thread(start_service, "signaling", signaling_env)
    try:
        yield Stack(bus, ("127.0.0.1", int(signaling_env["ECHODESK_SIGNALING_SIP_UDP_PORT"]))), carrier
    finally:
        outputs = []
        for process in (signaling, media):
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.to_thread(process.communicate, None, 30)
            outputs.append(output)
            assert process.returncode == 0, output
        if carrier.result is None:
            await carrier.stop_async()
        await bus.close()
        for output in outputs:
            assert "Traceback" not in output, output


def place_call(
    sip: tuple[str, int], offer: str, number: str = "555123456"
) -> tuple[SipClient, Response, dict[str, str]]:
    """INVITE as agent 100, answering the 407 (RFC 3261 22.3); returns the final response."""
    client = SipClient(sip, timeout=15)
    uri = f"sip:{number}@{DOMAIN}"
    dialog = {
        "from": f"<sip:100@{DOMAIN}>;tag={secrets.token_hex(4)}",
        "call_id": secrets.token_hex(8),
        "uri": uri,
    }
    headers = [
        f"From: {dialog['from']}",
        f"To: <{uri}>",
        f"Call-ID: {dialog['call_id']}",
        f"Contact: <sip:100@127.0.0.1:{client.port}>",
        "Content-Type: application/sdp",
    ]
    challenge = client.request("INVITE", uri, [*headers, "CSeq: 1 INVITE"], offer.encode())
    assert challenge.status_code == 407
    client.send(_ack(challenge, uri, 1, client))
    answer = DigestClient("100", password="pw-100").answer(
        challenge.headers.get_all("Proxy-Authenticate"), "INVITE", uri
    )
    final = client.request(
        "INVITE", uri, [*headers, "CSeq: 2 INVITE", f"Proxy-Authorization: {answer.value}"], offer.encode()
    )
    return client, final, dialog


def _ack(response: Response, uri: str, cseq: int, client: SipClient, *, new_branch: bool = False) -> bytes:
    via = response.headers.get_all("Via")[0]
    if new_branch:
        via = f"SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK{secrets.token_hex(8)};rport"
    return (
        f"ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {response.headers.get('From')}\r\n"
        f"To: {response.headers.get('To')}\r\nCall-ID: {response.call_id}\r\nCSeq: {cseq} ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def call_events(bus: Bus, call_count: int = 1) -> list[CallEventEnvelope]:
    sub = await bus.js.pull_subscribe(subjects.call_events(), stream=subjects.CALL_EVENTS.name)
    found: list[CallEventEnvelope] = []
    async with asyncio.timeout(15):
        while sum(1 for e in found if e.type == "call.ended") < call_count:  # type: ignore[attr-defined]
            try:
                for msg in await sub.fetch(20, timeout=0.5):
                    event = parse_event(msg.data)
                    assert isinstance(event, CallEventEnvelope)
                    found.append(event)
            except nats.errors.TimeoutError:
                continue
    return found


async def test_agent_calls_a_customer_and_hears_the_echo(stack: tuple[Stack, Sipp]) -> None:
    gateway, carrier = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog = await asyncio.to_thread(place_call, gateway.sip, phone.description())
        assert answered.status_code == 200, answered
        assert answered.headers.get("Content-Type") == "application/sdp"
        phone.learn(answered.body.decode())
        contact = answered.headers.get("Contact") or ""
        target = contact.strip("<>").split(">")[0]
        client.send(_ack(answered, target, 2, client, new_branch=True))
        phone.start_tone(1000)
        await asyncio.sleep(2.0)
        heard = analyse(phone.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
        assert heard["purity"] > 0.9, heard
        bye = await asyncio.to_thread(
            client.request,
            "BYE",
            target,
            [
                f"From: {dialog['from']}",
                f"To: {answered.headers.get('To')}",
                f"Call-ID: {dialog['call_id']}",
                "CSeq: 3 BYE",
            ],
        )
        assert bye.status_code == 200
        client.close()
    finally:
        phone.close()
    result = await carrier.wait_async(timeout=20)
    result.assert_success(calls=2)
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.ringing", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    assert [e.sequence for e in events] == [0, 1, 2, 3]
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
    assert ended.talk_time_s >= 2.0


async def test_echo_line_returns_the_agents_own_audio(stack: tuple[Stack, Sipp]) -> None:
    gateway, _ = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog = await asyncio.to_thread(
            place_call, gateway.sip, phone.description(), "*43"
        )
        assert answered.status_code == 200, answered
        phone.learn(answered.body.decode())
        target = (answered.headers.get("Contact") or "").strip("<>").split(">")[0]
        client.send(_ack(answered, target, 2, client, new_branch=True))
        phone.start_tone(700)
        await asyncio.sleep(1.5)
        heard = analyse(phone.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(700, abs=15), heard
        bye = await asyncio.to_thread(
            client.request,
            "BYE",
            target,
            [
                f"From: {dialog['from']}",
                f"To: {answered.headers.get('To')}",
                f"Call-ID: {dialog['call_id']}",
                "CSeq: 3 BYE",
            ],
        )
        assert bye.status_code == 200
        client.close()
    finally:
        phone.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    assert events[0].data.to_number == "*43"  # type: ignore[attr-defined]
