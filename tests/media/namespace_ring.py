"""Calls that ring a browser, through the media worker on a real nats-server, with aiortc as the
browser answering our offer, inside a network namespace of the test's own (see namespace_echo.py).

Scenarios (``--scenario``):

- ``ring``: an inbound call. ``media.session.create`` (webrtc-rtp) with the carrier's offer (a plain
  RTP peer); aiortc answers our offer and the answer goes back through ``update``; aiortc sends 440 Hz
  and the carrier 1 kHz. Then the browser re-offers: garbage (refused), hold (sendonly), resume.
- ``agents``: agent to agent (webrtc-webrtc): the caller's aiortc offers, the callee's aiortc answers
  our offer (``customer_sdp``; its answer as ``RemoteDescription(leg=customer)``); 440 Hz and 1 kHz.

One JSON object goes to stdout (last line).

Run: ``unshare -n python -m tests.media.namespace_ring --scenario ring``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc import RTCSessionDescription

from services.media.service import MediaService
from services.media.webrtc import WebRtcSession
from shared import subjects
from shared.bus import Bus, RemoteError
from shared.events import LegKind
from shared.media import (
    CloseSession,
    CreateSession,
    LocalDescription,
    RemoteDescription,
    SessionClosed,
    SessionKind,
)
from shared.service import ServiceContext
from shared.settings import MediaSettings
from tests.media.namespace_bridge import Browser
from tests.media.namespace_echo import ADDRESS, set_up_network
from tests.support.media import create_session
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer
from tests.support.rtp_peer import analyse as analyse_rtp

SECONDS = 1.0


async def answer_offer(browser: Browser, sdp: str) -> str:
    """The browser's side of a call that rings it: our offer set, its answer made."""
    await browser.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    await browser.pc.setLocalDescription(await browser.pc.createAnswer())
    return str(browser.pc.localDescription.sdp)


async def reoffer(browser: Browser, direction: str) -> str:
    """A re-offer as SIP.js makes one to hold (sendonly) or resume (sendrecv)."""
    browser.pc.getTransceivers()[0].direction = direction
    await browser.pc.setLocalDescription(await browser.pc.createOffer())
    return str(browser.pc.localDescription.sdp)


async def until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    """Wait for a counter to move; False when it did not within ``timeout`` (the report says so)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        return False
    return True


async def heard_after(browser: Browser, seconds: float) -> dict[str, float] | None:
    """What the browser hears over the next ``seconds`` (plus settling time)."""
    browser.chunks.clear()
    await asyncio.sleep(seconds + 0.5)
    return browser.heard(seconds)


async def ring(bus: Bus, worker: MediaService) -> dict[str, Any]:
    carrier = await RtpPeer.open(ADDRESS)
    browser = Browser(440)
    created = await create_session(
        bus,
        CreateSession(
            tenant_id="t1",
            call_id="call-in",
            kind=SessionKind.WEBRTC_RTP,
            customer_offer=carrier.description(),
        ),
    )
    assert created.agent_sdp is not None
    assert created.customer_sdp is not None
    carrier.learn(created.customer_sdp)
    carrier.start_tone(1000)
    verb = lambda name: subjects.media_session(created.worker_id, created.session_id, name)  # noqa: E731
    answer = await answer_offer(browser, created.agent_sdp)
    reply = await bus.request(
        verb("update"), RemoteDescription(leg=LegKind.AGENT, sdp=answer, type="answer"), LocalDescription
    )
    session = worker.bridges[created.session_id].legs[LegKind.AGENT].media
    assert isinstance(session, WebRtcSession)
    result: dict[str, Any] = {
        "agent_sdp": created.agent_sdp,
        "customer_sdp": created.customer_sdp,
        "browser_answer": answer,
        "answer_reply": reply.sdp,
    }
    result["connected"] = await until(lambda: session.counters.rtp_sent > 50 and len(carrier.received) > 50)
    result["browser_heard"] = await heard_after(browser, SECONDS)
    result["carrier_heard"] = analyse_rtp(carrier.audio(last_seconds=SECONDS)) if carrier.received else None

    # A re-INVITE with garbage SDP: refused, and the call keeps its audio.
    try:
        await bus.request(
            verb("update"),
            RemoteDescription(leg=LegKind.AGENT, sdp="v=0\r\no=garbage\r\n", type="offer"),
            LocalDescription,
        )
        result["garbage"] = "accepted"
    except RemoteError as error:
        result["garbage"] = error.code
    sent = session.counters.rtp_sent
    result["audio_after_garbage"] = await until(lambda: session.counters.rtp_sent > sent + 25)

    # Hold: the browser re-offers sendonly; we answer recvonly and stop sending to it, and its audio
    # still reaches the carrier.
    held = await bus.request(
        verb("update"),
        RemoteDescription(leg=LegKind.AGENT, sdp=await reoffer(browser, "sendonly"), type="offer"),
        LocalDescription,
    )
    assert held.sdp is not None
    await browser.pc.setRemoteDescription(RTCSessionDescription(sdp=held.sdp, type="answer"))
    result["hold_answer"] = held.sdp
    sent, not_sent, to_carrier = session.counters.rtp_sent, session.counters.not_sent, len(carrier.received)
    result["hold_paused"] = await until(lambda: session.counters.not_sent > not_sent + 25)
    result["hold_sent_meanwhile"] = session.counters.rtp_sent - sent
    result["hold_carrier_still_hears"] = len(carrier.received) - to_carrier

    resumed = await bus.request(
        verb("update"),
        RemoteDescription(leg=LegKind.AGENT, sdp=await reoffer(browser, "sendrecv"), type="offer"),
        LocalDescription,
    )
    assert resumed.sdp is not None
    await browser.pc.setRemoteDescription(RTCSessionDescription(sdp=resumed.sdp, type="answer"))
    result["resume_answer"] = resumed.sdp
    sent = session.counters.rtp_sent
    result["resumed"] = await until(lambda: session.counters.rtp_sent > sent + 25)
    result["browser_heard_after_resume"] = await heard_after(browser, SECONDS)
    result["counters"] = worker.bridges[created.session_id].counters()
    closed = await bus.request(verb("close"), CloseSession(reason="hangup"), SessionClosed)
    result["quality"] = [q.model_dump(mode="json") for q in closed.quality]
    result["ice_state"] = browser.pc.iceConnectionState
    carrier.close()
    await browser.close()
    return result


async def agents(bus: Bus, worker: MediaService) -> dict[str, Any]:
    caller, callee = Browser(440), Browser(1000)
    created = await create_session(
        bus,
        CreateSession(
            tenant_id="t1",
            call_id="call-a2a",
            kind=SessionKind.WEBRTC_WEBRTC,
            agent_offer=await caller.offer(),
        ),
    )
    assert created.agent_sdp is not None
    assert created.customer_sdp is not None
    await caller.answer(created.agent_sdp)
    answer = await answer_offer(callee, created.customer_sdp)
    verb = lambda name: subjects.media_session(created.worker_id, created.session_id, name)  # noqa: E731
    await bus.request(
        verb("update"), RemoteDescription(leg=LegKind.CUSTOMER, sdp=answer, type="answer"), LocalDescription
    )
    bridge = worker.bridges[created.session_id]
    first, second = bridge.legs[LegKind.AGENT].media, bridge.legs[LegKind.CUSTOMER].media
    assert isinstance(first, WebRtcSession)
    assert isinstance(second, WebRtcSession)
    connected = await until(lambda: first.counters.rtp_sent > 50 and second.counters.rtp_sent > 50)
    caller_heard, callee_heard = await asyncio.gather(
        heard_after(caller, SECONDS), heard_after(callee, SECONDS)
    )
    result = {
        "agent_sdp": created.agent_sdp,
        "customer_sdp": created.customer_sdp,
        "connected": connected,
        "caller_heard": caller_heard,
        "callee_heard": callee_heard,
        "counters": bridge.counters(),
    }
    await bus.request(verb("close"), CloseSession(reason="hangup"), SessionClosed)
    await caller.close()
    await callee.close()
    return result


async def main(scenario: str) -> dict[str, Any]:
    network = set_up_network()
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store_dir=Path(store)).start()
        try:
            settings = MediaSettings(
                instance_id="ns-worker",
                bind_address=ADDRESS,
                rtp_port_min=10000,
                rtp_port_max=10099,
                health_port=0,
            )
            worker_bus = await Bus.connect(server.url, name="media", timeout=10)
            bus = await Bus.connect(server.url, name="signaling", timeout=10)
            worker = MediaService(settings)
            await worker.start(ServiceContext(settings=settings, bus=worker_bus))
            try:
                run = ring if scenario == "ring" else agents
                result = await asyncio.wait_for(run(bus, worker), 60)
            finally:
                await worker.stop()
                await worker_bus.close()
                await bus.close()
        finally:
            server.stop()
    return {"network": network, "scenario": scenario, **result}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=("ring", "agents"), required=True)
    arguments = parser.parse_args()
    report = asyncio.run(main(arguments.scenario))
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
