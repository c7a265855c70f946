"""Our ICE-lite port and aiortc peers playing browsers, inside a network namespace of their own.

The tests start this under ``unshare -n`` (``-rn`` when not root): the namespace has only what it
sets up here, so nothing can leave the machine. aiortc skips loopback addresses when it gathers
(PEERS.md), so the namespace gets a private address on an interface of its own (a dummy interface,
or a veth pair where the kernel has no dummy driver, or an address on ``lo`` as a last resort); our
endpoint binds and advertises it.

Each ``--peer FREQUENCY:SETUP`` is one aiortc ``RTCPeerConnection`` offering audio (aiortc offers
opus, PCMU and PCMA) with a tone of that frequency; our session answers with ``a=setup:SETUP``, echoes
the audio back, and the peer analyses what it receives. All peers run at once on the same port.
One JSON object goes to stdout: the network used, per peer the dominant frequency it heard, the
session's state and counters, and the mux's counters.

Run: ``unshare -n python -m tests.media.namespace_echo --peer 440:passive --peer 1000:active [--uvloop]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fractions
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from services.media.webrtc import RtpEcho, WebRtcMux
from shared.sdp import SessionDescription, Setup
from shared.settings import MediaSettings

ADDRESS = "10.99.0.1"
SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms, as browsers packetize G.711

#: Ways to give the namespace a non-loopback address, tried in order.
NETWORKS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    (
        "dummy",
        (
            ("ip", "link", "add", "d0", "type", "dummy"),
            ("ip", "addr", "add", f"{ADDRESS}/24", "dev", "d0"),
            ("ip", "link", "set", "d0", "up"),
        ),
    ),
    (
        "veth",
        (
            ("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
            ("ip", "addr", "add", f"{ADDRESS}/24", "dev", "v0"),
            ("ip", "link", "set", "v0", "up"),
            ("ip", "link", "set", "v1", "up"),
        ),
    ),
    ("loopback-alias", (("ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"),)),
)


def set_up_network() -> str:
    """Bring ``lo`` up and give the namespace :data:`ADDRESS`; returns the way that worked."""
    subprocess.run(("ip", "link", "set", "lo", "up"), check=True, capture_output=True)
    for name, commands in NETWORKS:
        if all(subprocess.run(command, capture_output=True).returncode == 0 for command in commands):
            return name
    raise RuntimeError("no way to add a private address in this namespace")


class ToneTrack(MediaStreamTrack):
    """A sine tone in 20 ms frames, paced in real time as a microphone would be."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        n = np.arange(self._pts, self._pts + FRAME_SAMPLES)
        samples = (8000 * np.sin(2 * np.pi * self.frequency * n / SAMPLE_RATE)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += FRAME_SAMPLES
        return frame


def analyse(samples: np.ndarray, rate: int) -> dict[str, float]:
    """Dominant frequency of ``samples`` and the share of the energy within 20 Hz of it."""
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    power = np.abs(np.fft.rfft(windowed)) ** 2
    power[0] = 0.0
    peak = int(np.argmax(power))
    resolution = rate / len(samples)
    band = max(1, round(20 / resolution))
    return {
        "dominant_hz": peak * resolution,
        "purity": float(power[max(0, peak - band) : peak + band + 1].sum() / power.sum()),
        "rms": float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))),
    }


async def run_peer(
    mux: WebRtcMux, frequency: float, setup: Setup, seconds: float, deadline: float
) -> dict[str, Any]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN server: nothing leaves
    pc.addTrack(ToneTrack(frequency))
    chunks: list[np.ndarray] = []
    rates: list[int] = []
    enough = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def collect(track: MediaStreamTrack) -> None:
        total = 0
        try:
            while True:
                frame = await track.recv()
                data = frame.to_ndarray().reshape(-1)
                chunks.append(data)
                rates.append(frame.sample_rate)
                total += len(data)
                if total >= (seconds + 0.5) * frame.sample_rate:
                    enough.set()
        except MediaStreamError:
            return

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            tasks.append(asyncio.ensure_future(collect(track)))

    await pc.setLocalDescription(await pc.createOffer())
    session = mux.create_session()
    echo = RtpEcho(session)
    answer = session.accept_offer(SessionDescription.parse(pc.localDescription.sdp), setup=setup)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.serialize(), type="answer"))
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):  # the report then says nothing was heard
        await asyncio.wait_for(enough.wait(), max(0.1, deadline - time.monotonic()))
    result: dict[str, Any] = {
        "frequency": frequency,
        "setup": setup.value,
        "answer_codec": str(session.codecs[0]) if session.codecs else None,
        "answer": answer.serialize(),
        "ice_state": pc.iceConnectionState,
        "connection_state": pc.connectionState,
        "session_state": session.state.value,
        "session_reason": session.reason,
        "dtls_version": session.dtls.protocol_version if session.dtls is not None else None,
        "session_counters": dataclasses.asdict(session.counters),
        "echoed": echo.echoed,
        "echo_dropped": echo.dropped,
        "ice_checks": session.ice.checks,
        "seconds_to_enough": round(time.monotonic() - started, 2) if enough.is_set() else None,
    }
    result["heard"] = None
    if enough.is_set():
        # The last ``seconds`` of what came back: the echo, once it has settled.
        rate = rates[-1]
        result["heard"] = analyse(np.concatenate(chunks)[-int(seconds * rate) :], rate)
    await pc.close()
    for task in tasks:
        task.cancel()
    mux.remove(session)
    return result


async def main(peers: list[tuple[float, Setup]], seconds: float, timeout: float) -> dict[str, Any]:
    network = set_up_network()
    port = MediaSettings().webrtc_port
    mux = await WebRtcMux.listen(ADDRESS, port, advertised_address=ADDRESS)
    deadline = time.monotonic() + timeout
    try:
        results = await asyncio.gather(
            *(run_peer(mux, frequency, setup, seconds, deadline) for frequency, setup in peers)
        )
    finally:
        counters = mux.counters.as_dict()
        mux.close()
    loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    return {"network": network, "loop": loop, "port": port, "peers": results, "mux_counters": counters}


def parse_peer(text: str) -> tuple[float, Setup]:
    frequency, _, setup = text.partition(":")
    return float(frequency), Setup(setup or "passive")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer", action="append", type=parse_peer, required=True)
    parser.add_argument("--seconds", type=float, default=1.0, help="audio analysed per peer")
    parser.add_argument("--timeout", type=float, default=12.0, help="give up on a peer after this")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the worker does")
    arguments = parser.parse_args()
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if arguments.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        report = runner.run(main(arguments.peer, arguments.seconds, arguments.timeout))
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
