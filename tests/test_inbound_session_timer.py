"""RFC 4028 session timers on a carrier's inbound call, where the gateway is the UAS, on a real clock
at the 90 s minimum.

sipp plays the carrier (tests/sipp/carrier_inbound_timer_uac.xml): it first asks for a 60 s interval
and gets ``422`` with ``Min-SE: 90``, asks again for 90 s with itself as refresher, and then never
refreshes. Agent 100's desk phone answers and talks (the carrier echoes its tone); once the refresh
is overdue (90 - 30 = 60 s, RFC 4028 10) the gateway ends the call on both legs with cause
``session_timer_expired``. The refreshes themselves, and the gateway refreshing a carrier that cannot,
are tested in virtual time in tests/signaling/test_inbound_session_timer.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.events import CallEnded, EndCause, Party
from shared.supervisor import free_port
from tests.support.desk_phone import DeskPhone
from tests.support.gateway import AGENT_PASSWORD, DOMAIN, add_inbound_trunk, call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

DID = "+995322000000"
OVERDUE_S = 90 - 30


async def test_a_carrier_that_owes_refreshes_and_sends_none_is_ended(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = {"ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5"}  # sipp 3.6 answers MD5 only
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, _outbound):
        port = await add_inbound_trunk(gateway.bus, (DID,))
        phone = await asyncio.to_thread(DeskPhone.registered, gateway.sip, "100", DOMAIN, AGENT_PASSWORD)
        audio = await RtpPeer.open("127.0.0.1")
        carrier = Sipp(
            "carrier_inbound_timer_uac",
            tmp_path,
            remote=gateway.sip,
            injection=[["555123456", DID]],
            calls=1,
            timeout=OVERDUE_S + 60,
            recv_timeout=OVERDUE_S + 30,
            local_port=port,
            extra_args=("-rtp_echo", "-mp", str(free_port())),
        )
        try:
            await carrier.start_async()
            invite = await asyncio.to_thread(phone.wait_request, "INVITE")
            audio.learn(invite.body.decode())
            phone.reply(invite, 200, body=audio.description().encode())
            await asyncio.to_thread(phone.wait_request, "ACK")
            answered_at = time.monotonic()
            audio.start_tone(1000)
            await asyncio.sleep(1.5)
            heard = analyse(audio.audio(last_seconds=1.0))
            assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
            phone.client.sock.settimeout(OVERDUE_S + 20)
            bye = await asyncio.to_thread(phone.wait_request, "BYE")
            waited = time.monotonic() - answered_at
            phone.reply(bye, 200)
        finally:
            audio.close()
            phone.close()
        result = await carrier.wait_async(timeout=30)
        result.assert_success(1)
        assert result.count("422", "Recv") == 1, result.describe()
        assert OVERDUE_S - 1 <= waited <= OVERDUE_S + 5, waited
        events = await call_events(gateway.bus)
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.data.cause, ended.data.ended_by) == (EndCause.SESSION_TIMER_EXPIRED, Party.SYSTEM)
    # The refused first INVITE made no call of its own.
    assert [e.type for e in events].count("call.created") == 1
