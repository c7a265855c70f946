"""Recorded calls for recorder tests: both legs' RTP as a media worker forks it, chunked per
``shared/recording.py``, published as a worker publishes, and the resulting WAV read back.

:func:`call_chunks` is deterministic: the same arguments give the same chunks, so two recorders
fed the same call (one killed half way, one not) can be compared byte for byte.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shared import recording, subjects
from shared.bus import Bus
from shared.events import LegKind
from shared.recording import AudioChunk, Chunk, EndOfCall, Frame, PauseMark, RecordingLease
from tests.support.rtp_peer import FRAME, SAMPLE_RATE, tone

PTIME_US = 20_000
STARTED_AT = 1_764_072_000.0  # 2025-11-25 12:00 UTC: object keys by date are checked against it


@dataclass
class LegAudio:
    leg: LegKind
    frequency: float
    ssrc: int
    #: Packet indexes (20 ms each) the worker never received.
    lost: frozenset[int] = frozenset()
    #: RTP timestamp of packet 0 (near the wrap, to check unwrapping).
    first_timestamp: int = 0
    first_sequence: int = 0
    #: Arrival of packet 0 after the call's first packet (the other leg may start later).
    offset_us: int = 0
    #: Extra arrival delay per packet index (network jitter).
    jitter_us: dict[int, int] = field(default_factory=dict)

    def frames(self, packets: int) -> list[Frame]:
        out = []
        for index in range(packets):
            if index in self.lost:
                continue
            out.append(
                Frame(
                    (self.first_sequence + index) & 0xFFFF,
                    (self.first_timestamp + index * FRAME) & 0xFFFFFFFF,
                    self.offset_us + index * PTIME_US + self.jitter_us.get(index, 0),
                    tone(self.frequency, index * FRAME),
                )
            )
        return out


def call_chunks(
    tenant: str,
    legs: list[LegAudio],
    seconds: float,
    *,
    codec: str = "PCMU/8000",
    per_chunk: int = 8,
    pause: tuple[float, float] | None = None,
) -> list[Chunk]:
    """The chunks a worker would send for a call of ``seconds``: each leg's frames in groups of
    ``per_chunk``, ordered by the arrival of their last frame, then the END mark at the call's end.
    ``pause`` (from_s, to_s) drops the frames inside it and adds PAUSE/RESUME marks."""
    packets = int(seconds * 1_000_000 // PTIME_US)
    groups: list[tuple[int, LegAudio, list[Frame]]] = []
    for leg in legs:
        frames = leg.frames(packets)
        if pause is not None:
            start_us, end_us = int(pause[0] * 1e6), int(pause[1] * 1e6)
            frames = [f for f in frames if not start_us <= f.arrival_us < end_us]
        for at in range(0, len(frames), per_chunk):
            group = frames[at : at + per_chunk]
            groups.append((group[-1].arrival_us, leg, group))
    marks: list[tuple[int, bool]] = []
    if pause is not None:
        marks = [(int(pause[0] * 1e6), True), (int(pause[1] * 1e6), False)]
    items: list[tuple[int, int, object]] = [(at, 1, (leg, group)) for at, leg, group in groups]
    items += [(at, 0, paused) for at, paused in marks]
    items.sort(key=lambda item: (item[0], item[1]))
    chunks: list[Chunk] = []
    for _, kind, value in items:
        sequence = len(chunks)
        if kind == 0:
            assert isinstance(value, bool)
            at = next(a for a, p in marks if p is value)
            chunks.append(PauseMark(tenant, sequence, STARTED_AT, at, value))
        else:
            leg, group = value  # type: ignore[misc]
            chunks.append(AudioChunk(tenant, sequence, STARTED_AT, leg.leg, codec, leg.ssrc, tuple(group)))
    end_us = packets * PTIME_US
    forked = sum(len(chunk.frames) for chunk in chunks if isinstance(chunk, AudioChunk))
    chunks.append(EndOfCall(tenant, len(chunks), STARTED_AT, end_us, 0, forked))
    return chunks


async def request_recording(bus: Bus, call_id: str) -> None:
    """What a worker does when a recorded session starts: an unclaimed lease in KV ``recordings``."""
    kv = await bus.bucket(subjects.RECORDINGS_KV)
    await kv.create(call_id, RecordingLease().model_dump_json().encode())


async def publish_chunks(bus: Bus, call_id: str, chunks: list[Chunk] | list[bytes]) -> None:
    for item in chunks:
        data = item if isinstance(item, bytes) else recording.encode(item)
        sequence = item.sequence if not isinstance(item, bytes) else -1
        headers = {"Nats-Msg-Id": recording.message_id(call_id, sequence)} if sequence >= 0 else None
        await bus.js.publish(subjects.recording_audio(call_id), data, headers=headers)


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16], int]:
    """(left, right, rate) of a stereo 16-bit WAV."""
    with wave.open(str(path), "rb") as reader:
        assert reader.getnchannels() == 2
        assert reader.getsampwidth() == 2
        rate = reader.getframerate()
        frames = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16).reshape(-1, 2)
    return frames[:, 0].copy(), frames[:, 1].copy(), rate


__all__ = [
    "FRAME",
    "SAMPLE_RATE",
    "STARTED_AT",
    "LegAudio",
    "call_chunks",
    "publish_chunks",
    "read_wav",
    "request_recording",
]
