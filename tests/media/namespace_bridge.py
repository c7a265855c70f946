"""The media worker on a real nats-server with aiortc as the browser and a plain RTP peer as the
carrier, all inside a network namespace of the test's own (see namespace_echo.py for why).

Scenarios (``--scenario``):

- ``bridge``: ``media.session.create`` (webrtc-rtp) with aiortc's offer; the RTP peer answers our RTP
  offer through ``update``; aiortc sends 440 Hz and the RTP peer 1 kHz; each side's audio is analysed.
  Then a digit from the RTP peer (an RFC 4733 event -> a MediaEvent), SendDtmf towards it, and close.
- ``opus``: the same bridge with aiortc's offer restricted to Opus (``setCodecPreferences``, as a
  browser whose G.711 is switched off): the worker transcodes Opus <-> G.711 on its packet path.
- ``echo``: an echo session over NATS; aiortc hears its own tone.

One JSON object goes to stdout.

Run: ``unshare -n python -m tests.media.namespace_bridge --scenario bridge``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from services.media.service import MediaService
from shared import subjects
from shared.bus import Bus
from shared.events import LegKind
from shared.media import (
    CloseSession,
    CreateSession,
    Done,
    LocalDescription,
    MediaEvent,
    RemoteDescription,
    SendDtmf,
    SessionClosed,
    SessionKind,
)
from shared.service import ServiceContext
from shared.settings import MediaSettings
from tests.media.namespace_echo import ADDRESS, ToneTrack, analyse, set_up_network
from tests.support.media import create_session
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer
from tests.support.rtp_peer import analyse as analyse_rtp


class Browser:
    """aiortc playing the browser: sends a tone, keeps what it hears."""

    def __init__(self, frequency: float, *, opus_only: bool = False) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ToneTrack(frequency))
        if opus_only:
            [transceiver] = self.pc.getTransceivers()
            capabilities = RTCRtpSender.getCapabilities("audio").codecs
            transceiver.setCodecPreferences([c for c in capabilities if c.mimeType.lower() == "audio/opus"])
        self.chunks: list[np.ndarray] = []
        self.rate = 8000
        self.tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.tasks.append(asyncio.ensure_future(self._collect(track)))

    async def _collect(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                # Packed samples: Opus decodes to stereo, interleaved; one channel is analysed.
                channels = len(frame.layout.channels)
                self.chunks.append(frame.to_ndarray().reshape(-1)[::channels])
                self.rate = frame.sample_rate

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def heard(self, seconds: float) -> dict[str, float] | None:
        if not self.chunks:
            return None
        samples = np.concatenate(self.chunks)[-int(seconds * self.rate) :]
        return analyse(samples, self.rate)

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()


async def bridge(
    bus: Bus, worker: MediaService, seconds: float, *, opus_only: bool = False
) -> dict[str, Any]:
    browser = Browser(440, opus_only=opus_only)
    events: list[MediaEvent] = []

    async def on_event(event: MediaEvent, subject: str) -> None:
        events.append(event)

    await bus.subscribe(subjects.media_events("t1", "call-1"), MediaEvent, on_event)
    created = await create_session(
        bus,
        CreateSession(
            tenant_id="t1", call_id="call-1", kind=SessionKind.WEBRTC_RTP, agent_offer=await browser.offer()
        ),
    )
    assert created.agent_sdp is not None
    assert created.customer_sdp is not None
    await browser.answer(created.agent_sdp)
    carrier = await RtpPeer.open(ADDRESS)
    carrier.learn(created.customer_sdp)
    verb = lambda name: subjects.media_session(created.worker_id, created.session_id, name)  # noqa: E731
    await bus.request(
        verb("update"),
        RemoteDescription(leg=LegKind.CUSTOMER, sdp=carrier.description(), type="answer"),
        LocalDescription,
    )
    carrier.start_tone(1000)
    await asyncio.sleep(seconds + 1.5)
    heard_by_browser = browser.heard(seconds)
    heard_by_carrier = analyse_rtp(carrier.audio(last_seconds=seconds)) if carrier.received else None
    await carrier.send_digit("7", 120)
    await bus.request(verb("dtmf"), SendDtmf(leg=LegKind.CUSTOMER, digit="3", duration_ms=120), Done)
    await asyncio.sleep(0.5)
    bridge = worker.bridges[created.session_id]
    counters = bridge.counters()
    relays = {leg.kind.value: type(leg.relay).__name__ for leg in bridge.legs.values()}
    closed = await bus.request(verb("close"), CloseSession(reason="hangup"), SessionClosed)
    await asyncio.sleep(0.2)
    result = {
        "agent_sdp": created.agent_sdp,
        "customer_sdp": created.customer_sdp,
        "browser_heard": heard_by_browser,
        "carrier_heard": heard_by_carrier,
        "carrier_events": carrier.events(101),
        "events": [event.model_dump(mode="json") for event in events],
        "counters": counters,
        "relays": relays,
        "browser_offer": browser.pc.localDescription.sdp,
        "quality": [q.model_dump(mode="json") for q in closed.quality],
        "ice_state": browser.pc.iceConnectionState,
    }
    carrier.close()
    await browser.close()
    return result


async def echo(bus: Bus, worker: MediaService, seconds: float) -> dict[str, Any]:
    browser = Browser(440)
    created = await create_session(
        bus,
        CreateSession(
            tenant_id="t1", call_id="call-echo", kind=SessionKind.ECHO, agent_offer=await browser.offer()
        ),
    )
    assert created.agent_sdp is not None
    await browser.answer(created.agent_sdp)
    await asyncio.sleep(seconds + 1.5)
    heard = browser.heard(seconds)
    closed = await bus.request(
        subjects.media_session(created.worker_id, created.session_id, "close"), CloseSession(), SessionClosed
    )
    await browser.close()
    return {
        "agent_sdp": created.agent_sdp,
        "browser_heard": heard,
        "quality": [q.model_dump(mode="json") for q in closed.quality],
        "ice_state": browser.pc.iceConnectionState,
    }


async def main(scenario: str, seconds: float) -> dict[str, Any]:
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
            started = time.monotonic()
            try:
                if scenario == "echo":
                    run = echo(bus, worker, seconds)
                else:
                    run = bridge(bus, worker, seconds, opus_only=scenario == "opus")
                result = await asyncio.wait_for(run, 30)
            finally:
                await worker.stop()
                await worker_bus.close()
                await bus.close()
        finally:
            server.stop()
    return {
        "network": network,
        "scenario": scenario,
        "seconds": round(time.monotonic() - started, 2),
        **result,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=("bridge", "opus", "echo"), required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    arguments = parser.parse_args()
    report = asyncio.run(main(arguments.scenario, arguments.seconds))
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
