"""A whole outbound call through the gateway: a desk-phone agent (our test UA with an RTP endpoint)
calls a customer; signaling authenticates it, asks a real media worker over a real nats-server,
dials sipp playing the carrier (which answers and echoes the audio), and the agent hears its own
1 kHz tone come back through worker, carrier and worker again. Then the agent hangs up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import numpy as np
import pytest

from services.signaling.sip.message import Request, Response, make_response
from shared import subjects
from shared.bus import RemoteError
from shared.commands import CallCommand, CommandAccepted, ControlRecording, HangupCall, HoldCall, SendDigits
from shared.events import (
    CallRecordingChanged,
    CallStatus,
    EndCause,
    LegKind,
    Party,
    RecordingCompleted,
    RecordingState,
    parse_event,
)
from shared.records import TenantRecord, tenant_key
from tests.support.desk_phone import acknowledge, hang_up, in_dialog, place_call, talking
from tests.support.gateway import Gateway, call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Sipp]]:
    async with gateway_stack(nats_server, tmp_path) as running:
        yield running


async def test_agent_calls_a_customer_and_hears_the_echo(stack: tuple[Gateway, Sipp]) -> None:
    gateway, carrier = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog = await asyncio.to_thread(place_call, gateway.sip, phone.description())
        assert answered.status_code == 200, answered
        assert answered.headers.get("Content-Type") == "application/sdp"
        phone.learn(answered.body.decode())
        target = acknowledge(client, answered)
        phone.start_tone(1000)
        await asyncio.sleep(2.0)
        heard = analyse(phone.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
        assert heard["purity"] > 0.9, heard
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
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


async def test_echo_line_returns_the_agents_own_audio(stack: tuple[Gateway, Sipp]) -> None:
    gateway, _ = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog = await asyncio.to_thread(
            place_call, gateway.sip, phone.description(), "*43"
        )
        assert answered.status_code == 200, answered
        phone.learn(answered.body.decode())
        target = acknowledge(client, answered)
        phone.start_tone(700)
        await asyncio.sleep(1.5)
        heard = analyse(phone.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(700, abs=15), heard
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
    finally:
        phone.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    assert events[0].data.to_number == "*43"  # type: ignore[attr-defined]


def _offer(phone: RtpPeer, version: int, direction: str = "sendrecv") -> bytes:
    """The phone's offer again, its o= version bumped as a changed offer must be (RFC 3264 8)."""
    return phone.description(direction).replace(" 1 IN IP4 ", f" {version} IN IP4 ", 1).encode()


async def test_hold_resume_a_garbage_reinvite_and_info_dtmf_in_a_call(stack: tuple[Gateway, Sipp]) -> None:
    """The agent holds (sendonly) and resumes; a re-INVITE with garbage SDP gets 488 with a Warning
    and the call keeps its audio; a SIP INFO digit is played to the carrier as RFC 4733 (whose echo
    comes back to the phone as telephone-events)."""
    gateway, carrier = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog, target = await talking(gateway.sip, phone)
        sdp = ("Content-Type: application/sdp",)

        async def reinvite(cseq: int, body: bytes) -> Response:
            response = await asyncio.to_thread(
                in_dialog, client, answered, dialog, target, "INVITE", cseq, headers=sdp, body=body
            )
            if response.status_code == 200:
                acknowledge(client, response, cseq)
            return response

        held = await reinvite(3, _offer(phone, 2, "sendonly"))
        assert held.status_code == 200, held
        assert b"a=recvonly" in held.body, held.body
        resumed = await reinvite(4, _offer(phone, 3))
        assert resumed.status_code == 200, resumed
        assert b"a=sendrecv" in resumed.body, resumed.body
        garbage = await reinvite(5, b"v=0\r\nthis is not SDP\r\n")
        assert garbage.status_code == 488, garbage
        assert "399 echodesk" in (garbage.headers.get("Warning") or ""), garbage
        await asyncio.sleep(1.5)
        heard = analyse(phone.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard

        info = await asyncio.to_thread(
            in_dialog,
            client,
            answered,
            dialog,
            target,
            "INFO",
            6,
            headers=("Content-Type: application/dtmf-relay",),
            body=b"Signal=5\r\nDuration=160\r\n",
        )
        assert info.status_code == 200, info
        await asyncio.sleep(1.0)
        assert any(e["event"] == 5 and e["end"] for e in phone.events()), phone.events()[-5:]
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target, 7)).status_code == 200
    finally:
        phone.close()
    (await carrier.wait_async(timeout=20)).assert_success(calls=2)
    events = await call_events(gateway.bus)
    types = [e.type for e in events]  # type: ignore[attr-defined]
    # Two digits on the timeline: the agent's INFO, and the carrier's echo of it heard by the worker.
    assert types == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.held",
        "call.resumed",
        "call.dtmf",
        "call.dtmf",
        "call.ended",
    ], types
    assert events[3].data.held_by is Party.AGENT  # type: ignore[attr-defined]
    sent, echoed = events[5].data, events[6].data  # type: ignore[attr-defined]
    assert (sent.digit, sent.method, sent.duration_ms, sent.leg) == ("5", "sip-info", 160, LegKind.AGENT)
    assert (echoed.digit, echoed.method, echoed.leg) == ("5", "rfc4733", LegKind.CUSTOMER)


async def test_a_media_worker_that_dies_ends_its_calls_on_both_legs(stack: tuple[Gateway, Sipp]) -> None:
    """SIGKILL the worker mid-call: its heartbeats stop, and within 5 s signaling sends BYE to the
    agent and to the carrier and ends the call with cause media_failure."""
    gateway, carrier = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, _ = await asyncio.to_thread(place_call, gateway.sip, phone.description())
        assert answered.status_code == 200, answered
        acknowledge(client, answered)
        gateway.kill_media()
        killed_at = time.monotonic()
        bye = await asyncio.to_thread(client.receive_message)
        noticed_s = time.monotonic() - killed_at
        assert isinstance(bye, Request), bye
        assert bye.method == "BYE"
        client.send(make_response(bye, 200).encode())
        client.close()
    finally:
        phone.close()
    # The carrier got its BYE too: its scenario (INVITE, ACK, BYE) completed.
    (await carrier.wait_async(timeout=20)).assert_success(calls=2)
    ended = (await call_events(gateway.bus))[-1]
    assert ended.type == "call.ended"  # type: ignore[attr-defined]
    assert ended.data.cause is EndCause.MEDIA_FAILURE  # type: ignore[attr-defined]
    assert ended.data.ended_by is Party.SYSTEM  # type: ignore[attr-defined]
    print(f"worker death noticed and the agent's BYE received {noticed_s:.2f} s after SIGKILL")


async def test_the_api_holds_resumes_sends_digits_and_hangs_up_a_call(stack: tuple[Gateway, Sipp]) -> None:
    """Commands over calls.command.<node>.<verb>, the node being the source of the call's events:
    hold silences both directions, resume brings the echo back, digits go to the carrier as
    RFC 4733 (its echo reaches the phone), hangup BYEs both legs; a call the node does not hold and
    a command the call's state refuses get typed errors."""
    gateway, carrier = stack
    bus = gateway.bus
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, _, _, _ = await talking(gateway.sip, phone)
        created = (await call_events(bus, call_count=0, at_least=1))[0]
        node, call = created.source, {"tenant_id": "acme", "call_id": created.call_id}  # type: ignore[attr-defined]

        async def command(verb: str, body: CallCommand) -> CommandAccepted:
            return await bus.request(subjects.call_command(node, verb), body, CommandAccepted)

        with pytest.raises(RemoteError) as missing:
            await bus.request(
                subjects.call_command(node, "hold"),
                HoldCall(tenant_id="acme", call_id="nope"),
                CommandAccepted,
            )
        assert missing.value.code == "call_not_found"
        with pytest.raises(RemoteError) as other_tenant:
            await bus.request(
                subjects.call_command(node, "hangup"),
                HangupCall(tenant_id="other", call_id=created.call_id),
                CommandAccepted,
            )
        assert other_tenant.value.code == "call_not_found"

        held = await command("hold", HoldCall(**call))
        assert held.status is CallStatus.HELD
        with pytest.raises(RemoteError) as twice:
            await command("hold", HoldCall(**call))
        assert (twice.value.code, twice.value.message) == ("not_allowed", "the call is already on hold")
        await asyncio.sleep(0.3)  # what was on its way when the hold began
        mark = len(phone.received)
        await asyncio.sleep(1.0)
        during = phone.audio(since=mark)
        # Nothing of the tone comes back while held (silence or no packets at all).
        assert len(during) == 0 or float(np.sqrt(np.mean(during.astype(np.float64) ** 2))) < 50, len(during)
        resumed = await command("resume", HoldCall(**call))
        assert resumed.status is CallStatus.IN_PROGRESS
        await asyncio.sleep(1.0)
        assert analyse(phone.audio(last_seconds=0.5))["dominant_hz"] == pytest.approx(1000, abs=15)

        digits = SendDigits(**call, digits="12", duration_ms=100)
        assert (
            await bus.request(subjects.call_command(node, "dtmf"), digits, CommandAccepted)
        ).status is CallStatus.IN_PROGRESS
        await asyncio.sleep(1.0)
        heard = {e["event"] for e in phone.events() if e["end"]}
        assert {1, 2} <= heard, phone.events()[-6:]

        hung = await command("hangup", HangupCall(**call))
        assert hung.status is CallStatus.COMPLETED
        bye = await asyncio.to_thread(client.receive_message)
        assert isinstance(bye, Request)
        assert bye.method == "BYE"
        client.send(make_response(bye, 200).encode())
        client.close()
    finally:
        phone.close()
    (await carrier.wait_async(timeout=20)).assert_success(calls=2)
    events = await call_events(gateway.bus)
    assert all(e.source == node for e in events)  # type: ignore[attr-defined]
    assert [e.type for e in events if e.type in ("call.held", "call.resumed")] == [
        "call.held",
        "call.resumed",
    ]  # type: ignore[attr-defined]
    api_digits = [e.data.digit for e in events if e.type == "call.dtmf" and e.data.method == "api"]  # type: ignore[attr-defined]
    assert api_digits == ["1", "2"]
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.ended_by, ended.status) == (Party.API, CallStatus.COMPLETED)


async def test_a_recorded_call_yields_a_recording_as_long_as_the_call(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Signaling records calls with customers (ECHODESK_SIGNALING_RECORD_CALLS, on by default): the
    worker forks both legs to the bus, a recorder process writes the file, and recording.completed
    names a stereo WAV whose length is the call's talk time."""
    async with gateway_stack(nats_server, tmp_path, recorder=True) as (gateway, carrier):
        recordings = await gateway.bus.js.pull_subscribe(
            subjects.recording_events(), stream=subjects.RECORDING_EVENTS.name
        )
        phone = await RtpPeer.open("127.0.0.1")
        try:
            client, answered, dialog, target = await talking(gateway.sip, phone)
            await asyncio.sleep(2.0)
            assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
        finally:
            phone.close()
        (await carrier.wait_async(timeout=20)).assert_success(calls=2)
        ended = (await call_events(gateway.bus))[-1]
        completed = None
        async with asyncio.timeout(20):
            while completed is None:
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await recordings.fetch(10, timeout=0.5):
                        event = parse_event(msg.data)
                        if isinstance(event, RecordingCompleted):
                            completed = event
    assert completed.call_id == ended.call_id  # type: ignore[attr-defined]
    data = completed.data
    assert (data.format, data.channels, data.sample_rate) == ("wav", 2, 8000), data
    talk = ended.data.talk_time_s  # type: ignore[attr-defined]
    assert data.duration_s == pytest.approx(talk, abs=0.1), (data.duration_s, talk)


async def test_the_tenants_policy_and_the_recording_command_decide_what_is_recorded(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A tenant whose policy (KV ``tenants``, written by the api) turns recording off gets no
    recording of its calls. With it on again, the recording command pauses the next call's recording
    for a while, resumes it and finally stops it: the paused and stopped spans are silence, counted
    in recording.completed, the file is still as long as the call, and the call's timeline says who
    did what; a stopped recording cannot be resumed."""
    async with gateway_stack(nats_server, tmp_path, recorder=True, carrier_calls=3) as (gateway, carrier):
        bus = gateway.bus
        tenants = await bus.bucket(subjects.TENANTS_KV)
        off = TenantRecord(tenant_id="acme", record_calls=False)
        await tenants.put(tenant_key("acme"), off.model_dump_json().encode())
        await asyncio.sleep(0.5)  # signaling's watcher has it
        phone = await RtpPeer.open("127.0.0.1")
        try:
            client, answered, dialog, target = await talking(gateway.sip, phone)
            await asyncio.sleep(1.0)
            assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
        finally:
            phone.close()
        unrecorded = (await call_events(bus))[0]
        assert unrecorded.data.recorded is False  # type: ignore[attr-defined]

        await tenants.put(tenant_key("acme"), TenantRecord(tenant_id="acme").model_dump_json().encode())
        await asyncio.sleep(0.5)
        phone = await RtpPeer.open("127.0.0.1")
        try:
            client, answered, dialog, target = await talking(gateway.sip, phone)
            created = next(
                e for e in await call_events(bus, call_count=1, at_least=5) if e.call_id != unrecorded.call_id
            )
            assert created.data.recorded is True  # type: ignore[attr-defined]
            node = created.source

            async def recording(action: str) -> float:
                body = ControlRecording(tenant_id="acme", call_id=created.call_id, action=action)  # type: ignore[arg-type]
                await bus.request(subjects.call_command(node, "recording"), body, CommandAccepted)
                return time.monotonic()

            await asyncio.sleep(1.0)
            paused_at = await recording("pause")
            with pytest.raises(RemoteError) as twice:
                await recording("pause")
            assert (twice.value.code, twice.value.message) == (
                "not_allowed",
                "the call's recording is already paused",
            )
            await asyncio.sleep(1.0)
            resumed_at = await recording("resume")
            await asyncio.sleep(1.0)
            stopped_at = await recording("stop")
            with pytest.raises(RemoteError) as after_stop:
                await recording("resume")
            assert after_stop.value.code == "not_allowed"
            await asyncio.sleep(0.5)
            ended_at = time.monotonic()
            assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
        finally:
            phone.close()
        (await carrier.wait_async(timeout=20)).assert_success(calls=3)
        events = [e for e in await call_events(bus, call_count=2) if e.call_id == created.call_id]
        # Read from the stream's start (an ephemeral consumer made earlier would have expired).
        recordings = await bus.js.pull_subscribe(
            subjects.recording_events(), stream=subjects.RECORDING_EVENTS.name
        )
        completed = None
        seen: list[str] = []
        async with asyncio.timeout(20):
            while completed is None:
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await recordings.fetch(10, timeout=0.5):
                        event = parse_event(msg.data)
                        seen.append(event.call_id)  # type: ignore[union-attr]
                        if isinstance(event, RecordingCompleted):
                            completed = event
    assert unrecorded.call_id not in seen
    changes = [e.data for e in events if isinstance(e, CallRecordingChanged)]
    assert [(c.state, c.changed_by) for c in changes] == [
        (RecordingState.PAUSED, Party.API),
        (RecordingState.RECORDING, Party.API),
        (RecordingState.STOPPED, Party.API),
    ]
    talk = events[-1].data.talk_time_s  # type: ignore[attr-defined]
    assert completed.data.duration_s == pytest.approx(talk, abs=0.1), (completed.data.duration_s, talk)
    # Command round trips and the worker's packet clock: a packet's worth (20 ms) either way, plus
    # the request's own time.
    paused = (resumed_at - paused_at) + (ended_at - stopped_at)
    assert completed.data.paused_s == pytest.approx(paused, abs=0.15), (completed.data.paused_s, paused)


async def test_the_workers_quality_reports_chart_the_call_and_summarise_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """With quality reports every half second, a two-second call has call.quality events for both
    legs on its timeline, and call.ended carries the last of them."""
    media = {"ECHODESK_MEDIA_QUALITY_INTERVAL_S": "0.5"}
    async with gateway_stack(nats_server, tmp_path, media_settings=media) as (gateway, carrier):
        phone = await RtpPeer.open("127.0.0.1")
        try:
            client, answered, dialog, target = await talking(gateway.sip, phone)
            await asyncio.sleep(2.0)
            assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
        finally:
            phone.close()
        (await carrier.wait_async(timeout=20)).assert_success(calls=2)
        events = await call_events(gateway.bus)
    reports = [e for e in events if e.type == "call.quality"]  # type: ignore[attr-defined]
    assert len(reports) >= 2, [e.type for e in events]  # type: ignore[attr-defined]
    for report in reports:
        legs = {q.leg: q for q in report.data.legs}  # type: ignore[attr-defined]
        assert set(legs) == {LegKind.AGENT, LegKind.CUSTOMER}
        assert legs[LegKind.AGENT].codec == "PCMU/8000"
    ended = events[-1].data  # type: ignore[attr-defined]
    assert ended.quality == reports[-1].data.legs  # type: ignore[attr-defined]
    agent = next(q for q in ended.quality if q.leg is LegKind.AGENT)
    assert agent.packets_received > 50
    assert agent.mos is not None
    assert agent.mos > 4
