"""RFC 4028 session timers on a real call, the interval shortened to its minimum (90 s) by settings.

A desk-phone agent calls a customer through sipp playing a carrier with session timers
(tests/sipp/carrier_session_timer_uas.xml), echoing the audio. When the carrier's 200 makes the
gateway the refresher, the gateway re-INVITEs at half the interval and the call and its audio go on;
when the carrier is to refresh and never does, the gateway ends the call on both legs once the
refresh is overdue (interval minus a third, RFC 4028 10) with cause ``session_timer_expired``. The
virtual-clock tests of the same rules are tests/signaling/test_session_timer.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from services.signaling.sip.message import Request, make_response
from shared.events import EndCause, Party
from tests.support.desk_phone import hang_up, talking
from tests.support.gateway import call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

#: RFC 4028 4: the smallest interval a UA may ask for; the gateway asks for it here.
INTERVAL_S = 90
SETTINGS = {"ECHODESK_SIGNALING_SESSION_EXPIRES_S": str(INTERVAL_S)}


async def _hears(phone: RtpPeer, frequency: float) -> None:
    await asyncio.sleep(1.5)
    heard = analyse(phone.audio(last_seconds=1.0))
    assert heard["dominant_hz"] == pytest.approx(frequency, abs=15), heard


async def test_the_gateway_refreshes_when_the_carrier_makes_it_refresher(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    keys = {"interval": str(INTERVAL_S), "refresher": "uac"}
    async with gateway_stack(
        nats_server,
        tmp_path,
        signaling_settings=SETTINGS,
        carrier_scenario="carrier_session_timer_uas",
        carrier_keys=keys,
        carrier_timeout_s=150,
    ) as (gateway, carrier):
        phone = await RtpPeer.open("127.0.0.1")
        try:
            client, answered, dialog, target = await talking(gateway.sip, phone)
            await _hears(phone, 1000)
            # The refresh is due at 45 s; the call goes on past it with its audio.
            await asyncio.sleep(INTERVAL_S / 2 + 3)
            await _hears(phone, 1000)
            bye = await asyncio.to_thread(hang_up, client, answered, dialog, target)
            assert bye.status_code == 200, bye
        finally:
            phone.close()
        result = await carrier.wait_async(timeout=30)
        result.assert_success(calls=2)
        # The call's INVITE and one refresh re-INVITE (the OPTIONS probe is the other sipp call).
        assert result.count("INVITE", "Recv") == 2, result.describe()
        events = await call_events(gateway.bus)
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.ended_by, ended.cause) == (Party.AGENT, EndCause.NORMAL_CLEARING), ended
    assert ended.talk_time_s >= INTERVAL_S / 2


async def test_a_refresh_the_carrier_never_sends_ends_the_call(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    keys = {"interval": str(INTERVAL_S), "refresher": "uas"}
    async with gateway_stack(
        nats_server,
        tmp_path,
        signaling_settings=SETTINGS,
        carrier_scenario="carrier_session_timer_uas",
        carrier_keys=keys,
        carrier_timeout_s=150,
    ) as (gateway, carrier):
        phone = await RtpPeer.open("127.0.0.1")
        try:
            # The phone talks: a silent one would be ended by the media timeout first.
            client, _, _, _ = await talking(gateway.sip, phone)
            answered_at = time.monotonic()
            client.sock.settimeout(INTERVAL_S)
            bye = await asyncio.to_thread(client.receive_message)
            waited = time.monotonic() - answered_at
            assert isinstance(bye, Request), bye
            assert bye.method == "BYE", bye
            client.send(make_response(bye, 200).encode())
            client.close()
        finally:
            phone.close()
        # RFC 4028 10: the refresh was due by interval - min(32, interval / 3) = 60 s.
        assert INTERVAL_S - 30 - 1 <= waited <= INTERVAL_S - 30 + 5, waited
        (await carrier.wait_async(timeout=30)).assert_success(calls=2)
        events = await call_events(gateway.bus)
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.ended_by, ended.cause) == (Party.SYSTEM, EndCause.SESSION_TIMER_EXPIRED), ended
