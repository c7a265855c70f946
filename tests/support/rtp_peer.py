"""A plain RTP endpoint for tests: a carrier or a desk phone reduced to its packets.

It writes an RTP/AVP offer or answer (PCMU, PCMA, telephone-event at a payload type of its choice),
sends a PCMU tone paced at 20 ms, sends RFC 4733 digits the way a phone does, and records what it
receives, so tests check the audio by FFT and the events field by field.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from services.media.g711 import alaw_to_linear, linear_to_ulaw, ulaw_to_linear
from shared.sdp import SessionDescription

_RTP = struct.Struct("!BBHII")
_EVENT = struct.Struct("!BBH")
_ULAW = np.array([ulaw_to_linear(code) for code in range(256)], dtype=np.int16)
_ALAW = np.array([alaw_to_linear(code) for code in range(256)], dtype=np.int16)
SAMPLE_RATE = 8000
FRAME = 160


@dataclass(frozen=True)
class Received:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    source: tuple[str, int]


def tone(frequency: float, start: int, count: int = FRAME, amplitude: float = 8000) -> bytes:
    n = np.arange(start, start + count)
    samples = (amplitude * np.sin(2 * np.pi * frequency * n / SAMPLE_RATE)).astype(np.int16)
    return bytes(linear_to_ulaw(int(sample)) for sample in samples)


def analyse(samples: np.ndarray, rate: int = SAMPLE_RATE) -> dict[str, float]:
    """Dominant frequency and how much of the energy lies within 20 Hz of it."""
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    power = np.abs(np.fft.rfft(windowed)) ** 2
    power[0] = 0.0
    peak = int(np.argmax(power))
    resolution = rate / len(samples)
    band = max(1, round(20 / resolution))
    total = float(power.sum()) or 1.0
    return {
        "dominant_hz": peak * resolution,
        "purity": float(power[max(0, peak - band) : peak + band + 1].sum() / total),
        "rms": float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))),
    }


class RtpPeer(asyncio.DatagramProtocol):
    def __init__(self, host: str, *, event_type: int = 101) -> None:
        self.host = host
        self.port = 0
        self.event_type = event_type
        self.remote: tuple[str, int] | None = None
        self.received: list[Received] = []
        self.ssrc = secrets.randbits(32)
        self.sequence = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.sent = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._tone: asyncio.Task[None] | None = None
        self._paused = False

    @classmethod
    async def open(cls, host: str, *, event_type: int = 101) -> RtpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(
            lambda: cls(host, event_type=event_type), local_addr=(host, 0)
        )
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        _, second, sequence, timestamp, ssrc = _RTP.unpack_from(data)
        self.received.append(
            Received(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, data[12:], addr)
        )

    # -- SDP

    def description(self, direction: str = "sendrecv", codecs: str = "0 8") -> str:
        formats = f"{codecs} {self.event_type}"
        lines = [
            "v=0",
            f"o=peer {self.ssrc} 1 IN IP4 {self.host}",
            "s=-",
            f"c=IN IP4 {self.host}",
            "t=0 0",
            f"m=audio {self.port} RTP/AVP {formats}",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            f"a=rtpmap:{self.event_type} telephone-event/8000",
            f"a=fmtp:{self.event_type} 0-15",
            "a=ptime:20",
            f"a={direction}",
        ]
        return "\r\n".join(lines) + "\r\n"

    def learn(self, sdp: str) -> None:
        """Send to where ``sdp`` (our peer's offer or answer) says."""
        description = SessionDescription.parse(sdp)
        media = description.media[0]
        connection = description.connection_of(media)
        assert connection is not None
        self.remote = (connection.address, media.port)

    # -- sending

    def send(
        self, payload_type: int, payload: bytes, *, marker: bool = False, timestamp: int | None = None
    ) -> None:
        assert self._transport is not None
        assert self.remote is not None
        self.sequence = (self.sequence + 1) & 0xFFFF
        header = _RTP.pack(
            0x80,
            (0x80 if marker else 0) | payload_type,
            self.sequence,
            self.timestamp if timestamp is None else timestamp,
            self.ssrc,
        )
        self._transport.sendto(header + payload, self.remote)
        self.sent += 1

    def send_raw(self, data: bytes, destination: tuple[str, int]) -> None:
        assert self._transport is not None
        self._transport.sendto(data, destination)

    def start_tone(self, frequency: float) -> None:
        async def play() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            frames = 0
            while True:
                if not self._paused:
                    self.send(0, tone(frequency, frames * FRAME))
                self.timestamp = (self.timestamp + FRAME) & 0xFFFFFFFF
                frames += 1
                await asyncio.sleep(max(0.0, start + frames * 0.02 - loop.time()))

        self._tone = asyncio.ensure_future(play())

    async def send_digit(self, digit: str, duration_ms: int = 100) -> None:
        """One RFC 4733 event as phones send it: start (marker), updates, three end packets."""
        event = "0123456789*#ABCD".index(digit)
        self._paused = True
        start = self.timestamp
        total = duration_ms * 8
        elapsed = 0
        first = True
        while elapsed < total:
            self.send(self.event_type, _EVENT.pack(event, 10, elapsed), marker=first, timestamp=start)
            first = False
            await asyncio.sleep(0.02)
            elapsed += 160
        for _ in range(3):
            self.send(self.event_type, _EVENT.pack(event, 0x80 | 10, total), timestamp=start)
        self._paused = False

    # -- what arrived

    def audio(self, payload_type: int = 0, last_seconds: float | None = None, since: int = 0) -> np.ndarray:
        """The audio received (from packet ``since`` on: ``len(received)`` taken earlier), decoded."""
        table = _ULAW if payload_type == 0 else _ALAW
        chunks = [
            np.frombuffer(r.payload, dtype=np.uint8)
            for r in self.received[since:]
            if r.payload_type == payload_type
        ]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        samples = table[np.concatenate(chunks)]
        if last_seconds is not None:
            samples = samples[-int(last_seconds * SAMPLE_RATE) :]
        return samples

    def events(self, payload_type: int | None = None) -> list[dict[str, Any]]:
        wanted = self.event_type if payload_type is None else payload_type
        out = []
        for r in self.received:
            if r.payload_type == wanted and len(r.payload) >= 4:
                event, flags, duration = _EVENT.unpack_from(r.payload)
                out.append(
                    {
                        "event": event,
                        "end": bool(flags & 0x80),
                        "volume": flags & 0x3F,
                        "duration": duration,
                        "timestamp": r.timestamp,
                        "marker": r.marker,
                        "sequence": r.sequence,
                        "ssrc": r.ssrc,
                    }
                )
        return out

    def close(self) -> None:
        if self._tone is not None:
            self._tone.cancel()
        if self._transport is not None:
            self._transport.close()
