"""A signaling process killed in the middle of calls, and its replacement taking them over.

The whole gateway on a real nats-server: a desk phone (agent 100, plain RTP) calls a customer through
sipp playing the carrier, which echoes the audio. The signaling process gets SIGKILL (no chance to
say anything to anyone) and a new one is started with the same instance id, ports and settings, as
the supervisor or Kubernetes would. Media never passed through signaling, so the phone keeps hearing
its tone; the new instance reads the call's snapshot from KV ``calls`` and answers the phone's
re-INVITE and the carrier's later BYE in the original dialogs. A call still ringing at the kill
cannot be resumed: it is ended on both legs (CANCEL to the carrier, 487 to the phone).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from services.signaling.b2bua.call_store import load
from services.signaling.sip.message import Request, make_response
from shared import subjects
from shared.bus import Bus
from shared.commands import CommandAccepted, HoldCall
from shared.events import CallEnded, CallEventEnvelope, CallStatus, EndCause, Party
from tests.support.desk_phone import DeskPhone, acknowledge, in_dialog, place_call
from tests.support.gateway import (
    AGENT_PASSWORD,
    DOMAIN,
    add_inbound_trunk,
    call_events,
    gateway_stack,
    inbound_carrier,
)
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

NODE = "signaling-1"
SETTINGS = {"ECHODESK_INSTANCE_ID": NODE}


async def snapshots(bus: Bus, *, connected: bool, timeout: float = 10.0) -> dict[str, bytes]:
    """The calls of ``NODE`` in KV ``calls`` once one of them is (or is not yet) connected."""
    kv = await bus.bucket(subjects.CALLS_KV)
    async with asyncio.timeout(timeout):
        while True:
            found = await load(kv, NODE)
            if any((b'"connected":true' in data) == connected for data in found.values()):
                return found
            await asyncio.sleep(0.05)


class Arrivals:
    """When the phone's RTP packets arrived (sampled every 10 ms): the longest silence shows whether
    the audio ever stopped."""

    def __init__(self, phone: RtpPeer) -> None:
        self.phone = phone
        self.samples: list[tuple[float, int]] = []
        self._task = asyncio.ensure_future(self._sample())

    async def _sample(self) -> None:
        while True:
            self.samples.append((time.monotonic(), len(self.phone.received)))
            await asyncio.sleep(0.01)

    def longest_gap(self, since: float) -> float:
        self._task.cancel()
        changes = [
            at
            for (_, before), (at, count) in itertools.pairwise(self.samples)
            if at >= since and count > before
        ]
        return max((b - a for a, b in itertools.pairwise(changes)), default=float("inf"))


def _offer(phone: RtpPeer, version: int) -> bytes:
    return phone.description().replace(" 1 IN IP4 ", f" {version} IN IP4 ", 1).encode()


def _check_sequences(events: list[CallEventEnvelope]) -> None:
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences)), sequences  # no number twice, in order
    assert [type(e) for e in events].count(CallEnded) == 1


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
async def test_a_connected_call_survives_its_signaling_process_and_ends_by_the_carriers_bye(
    nats_server: NatsServer, tmp_path: Path, how: str
) -> None:
    """``sigkill``: the process dies without a word; ``sigterm``: it stops as a rollout stops it,
    with ECHODESK_SIGNALING_KEEP_CALLS_ON_STOP leaving its connected calls to the next process."""
    settings = {**SETTINGS, "ECHODESK_SIGNALING_KEEP_CALLS_ON_STOP": "true"} if how == "sigterm" else SETTINGS
    async with gateway_stack(
        nats_server,
        tmp_path,
        carrier_scenario="carrier_answer_hangup_uas",
        carrier_keys={"talk_ms": "14000"},
        signaling_settings=settings,
    ) as (gateway, carrier):
        phone = await RtpPeer.open("127.0.0.1")
        try:
            client, answered, dialog = await asyncio.to_thread(place_call, gateway.sip, phone.description())
            assert answered.status_code == 200, answered
            phone.learn(answered.body.decode())
            target = acknowledge(client, answered)
            phone.start_tone(1000)
            await snapshots(gateway.bus, connected=True)
            await asyncio.sleep(1.0)
            arrivals = Arrivals(phone)
            killed_at = time.monotonic()
            if how == "sigkill":
                gateway.kill_signaling()
            else:
                await gateway.stop_signaling()
            ready_s = await gateway.start_signaling()
            # The new instance answers in the original dialog: a re-INVITE from the phone (CSeq 3).
            reinvite = await asyncio.to_thread(
                in_dialog,
                client,
                answered,
                dialog,
                target,
                "INVITE",
                3,
                headers=("Content-Type: application/sdp",),
                body=_offer(phone, 2),
            )
            assert reinvite.status_code == 200, reinvite
            assert reinvite.to.tag == answered.to.tag
            acknowledge(client, reinvite, cseq=3)
            await asyncio.sleep(1.0)
            gap = arrivals.longest_gap(killed_at - 0.5)
            heard = analyse(phone.audio(last_seconds=1.0))
            assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
            assert heard["purity"] > 0.9, heard
            # The audio never stopped: no silence longer than a few packets while signaling was away.
            assert gap < 0.3, gap
            # The api's commands reach the call on the new instance (calls.command.<node>.<verb>).
            call = {
                "tenant_id": "acme",
                "call_id": (await call_events(gateway.bus, 0, at_least=1))[0].call_id,
            }
            held = await gateway.bus.request(
                subjects.call_command(NODE, "hold"), HoldCall(**call), CommandAccepted, timeout=5
            )
            assert held.status is CallStatus.HELD
            resumed = await gateway.bus.request(
                subjects.call_command(NODE, "resume"), HoldCall(**call), CommandAccepted, timeout=5
            )
            assert resumed.status is CallStatus.IN_PROGRESS
            await asyncio.sleep(1.0)
            heard = analyse(phone.audio(last_seconds=0.5))
            assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
            # The carrier hangs up; its BYE reaches the phone through the new instance.
            while True:
                message = await asyncio.to_thread(client.receive_message)
                if isinstance(message, Request) and message.method == "BYE":
                    break
            assert message.call_id == dialog["call_id"]
            assert (message.headers.get("From") or "").endswith(f"tag={answered.to.tag}")
            assert message.cseq.seq > 1
            client.send(make_response(message, 200).encode())
            client.close()
        finally:
            phone.close()
        (await carrier.wait_async(timeout=30)).assert_success(calls=2)
        events = await call_events(gateway.bus)
        # Quality reports come every few seconds (their number depends on timing): left out here,
        # numbered with the others below.
        types = [e.type for e in events if e.type != "call.quality"]  # type: ignore[attr-defined]
        assert types == [
            "call.created",
            "call.ringing",
            "call.answered",
            "call.held",
            "call.resumed",
            "call.ended",
        ]
        _check_sequences(events)
        ended = events[-1]
        assert isinstance(ended, CallEnded)
        assert (ended.data.cause, ended.data.ended_by) == (EndCause.NORMAL_CLEARING, Party.CUSTOMER)
        assert ended.data.talk_time_s >= 10.0
        assert ended.source == NODE
        # The call's snapshot went with it.
        await asyncio.sleep(0.3)
        assert await load(await gateway.bus.bucket(subjects.CALLS_KV), NODE) == {}
        print(f"{how}: signaling ready {ready_s:.2f} s after start; longest audio gap {gap * 1000:.0f} ms")


async def test_a_call_ringing_at_the_kill_is_ended_on_both_legs(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with gateway_stack(
        nats_server, tmp_path, carrier_scenario="carrier_ring_uas", signaling_settings=SETTINGS
    ) as (gateway, carrier):
        phone = await RtpPeer.open("127.0.0.1")
        try:
            calling = asyncio.ensure_future(asyncio.to_thread(place_call, gateway.sip, phone.description()))
            await call_events(gateway.bus, call_count=0, at_least=2)  # created, ringing
            await snapshots(gateway.bus, connected=False)
            await asyncio.sleep(0.2)  # the 180's change written too
            gateway.kill_signaling()
            await gateway.start_signaling()
            client, final, _ = await calling
            client.close()
        finally:
            phone.close()
        # The phone's INVITE got its final answer from the new instance, the carrier its CANCEL.
        assert final.status_code == 487, final
        assert "restarted" in final.reason
        (await carrier.wait_async(timeout=30)).assert_success(calls=2)
        events = await call_events(gateway.bus)
        assert [e.type for e in events] == ["call.created", "call.ringing", "call.ended"]  # type: ignore[attr-defined]
        _check_sequences(events)
        ended = events[-1]
        assert isinstance(ended, CallEnded)
        assert (ended.data.cause, ended.data.status) == (EndCause.SIGNALING_RESTARTED, CallStatus.FAILED)
        assert ended.data.message.startswith("Call ended: the gateway restarted")
        await asyncio.sleep(0.3)
        assert await load(await gateway.bus.bucket(subjects.CALLS_KV), NODE) == {}


async def test_an_inbound_call_a_desk_phone_answered_survives_sigkill_of_signaling(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The customer's carrier called in and agent 100's desk phone answered: after the takeover the
    carrier's BYE reaches the phone in the dialog the old process made with it."""
    did = "+995322000000"
    settings = {**SETTINGS, "ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5"}
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, _outbound):
        port = await add_inbound_trunk(gateway.bus, (did,))
        phone = await asyncio.to_thread(DeskPhone.registered, gateway.sip, "100", DOMAIN, AGENT_PASSWORD)
        audio = await RtpPeer.open("127.0.0.1")
        try:
            customer = await inbound_carrier(tmp_path, gateway, port, did, talk_ms=12000).start_async()
            invite = await asyncio.to_thread(phone.wait_request, "INVITE")
            audio.learn(invite.body.decode())
            phone.reply(invite, 200, body=audio.description().encode())
            await asyncio.to_thread(phone.wait_request, "ACK")
            audio.start_tone(1000)
            await snapshots(gateway.bus, connected=True)
            await asyncio.sleep(0.5)
            arrivals = Arrivals(audio)
            killed_at = time.monotonic()
            gateway.kill_signaling()
            await gateway.start_signaling()
            await asyncio.sleep(1.5)
            assert arrivals.longest_gap(killed_at - 0.5) < 0.3
            heard = analyse(audio.audio(last_seconds=1.0))
            assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
            bye = await asyncio.to_thread(phone.wait_request, "BYE")
            assert bye.call_id == invite.call_id
            assert bye.from_.tag == invite.from_.tag  # our tag in the phone's dialog, as before
            phone.reply(bye, 200)
            (await customer.wait_async(timeout=30)).assert_success(calls=1)
        finally:
            audio.close()
            phone.close()
        events = await call_events(gateway.bus)
    types = [e.type for e in events if e.type != "call.quality"]  # type: ignore[attr-defined]
    assert types == ["call.created", "call.answered", "call.ended"]  # the phone answered without 180
    _check_sequences(events)
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.data.cause, ended.data.ended_by) == (EndCause.NORMAL_CLEARING, Party.CUSTOMER)
