"""The chunk contract (shared/recording.py): what the worker builds is what the recorder reads, and
any other bytes are refused with a reason, never an unexpected exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.media.chunk_outbox import ChunkOutbox
from services.media.recording_fork import RecordingFork
from shared import recording
from shared.events import LegKind
from shared.recording import AudioChunk, EndOfCall, Frame, MalformedChunk, PauseMark, decode, encode

frames = st.builds(
    Frame,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 2**63),
    st.binary(max_size=200),
)
audio_chunks = st.builds(
    AudioChunk,
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    st.integers(0, 0xFFFFFFFF),
    st.floats(0, 4e9),
    st.sampled_from(list(LegKind)),
    st.sampled_from(["PCMU/8000", "PCMA/8000", "opus/48000/2"]),
    st.integers(0, 0xFFFFFFFF),
    st.lists(frames, max_size=16).map(tuple),
)


@given(audio_chunks)
def test_audio_chunks_round_trip(chunk: AudioChunk) -> None:
    assert decode(encode(chunk)) == chunk


def test_marks_round_trip() -> None:
    for mark in (PauseMark("t", 3, 1.5, 10_000, True), PauseMark("t", 4, 1.5, 20_000, False)):
        assert decode(encode(mark)) == mark
    end = EndOfCall("t", 9, 1.5, 30_000, 2, 140)
    assert decode(encode(end)) == end


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_are_refused_with_a_reason(data: bytes) -> None:
    try:
        decode(data)
        reason = "parsed"
    except MalformedChunk as exc:
        reason = str(exc)
    assert reason


@given(audio_chunks, st.data())
def test_a_damaged_chunk_is_refused_or_still_well_formed(chunk: AudioChunk, data: st.DataObject) -> None:
    raw = bytearray(encode(chunk))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parsed = decode(bytes(raw[:cut]))
    except MalformedChunk:
        return
    assert isinstance(parsed, AudioChunk | PauseMark | EndOfCall)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than"),
        (b"EDRX" + bytes(20), "magic"),
        (recording.header(recording.ChunkKind.END, LegKind.AGENT, 0, 0.0, b"a.b"), "tenant"),
        (recording.header(recording.ChunkKind.END, LegKind.AGENT, 0, float("nan"), b"t"), "not a time"),
        (recording.header(recording.ChunkKind.END, LegKind.AGENT, 0, 0.0, b"t") + b"\x00", "end marker"),
    ],
)
def test_refusals_say_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedChunk, match=reason):
        decode(data)


def test_the_fork_batches_per_leg_and_a_full_outbox_drops_and_counts_without_waiting() -> None:
    outbox = ChunkOutbox(capacity=3)
    fork = RecordingFork("acme", "call-1", outbox, frames_per_chunk=4, wall=lambda: 1000.0)
    agent = fork.tap(LegKind.AGENT, "PCMU/8000")
    customer = fork.tap(LegKind.CUSTOMER, "PCMA/8000")
    for index in range(8):
        agent.add(index, index * 160, 7, bytes([index]) * 160, 10.0 + index * 0.02)
        customer.add(index, 5000 + index * 160, 8, b"\xd5" * 160, 10.005 + index * 0.02)
    # Four chunks sealed (two per leg) into an outbox that holds three.
    assert fork.sequence == 4
    assert len(outbox) == 3
    assert fork.dropped == outbox.dropped == 1
    first = decode(outbox._queue[0].data)
    assert isinstance(first, AudioChunk)
    assert (first.leg, first.codec, first.ssrc, first.sequence, first.started_at) == (
        LegKind.AGENT,
        "PCMU/8000",
        7,
        0,
        1000.0,
    )
    assert [f.arrival_us for f in first.frames] == [0, 20_000, 40_000, 60_000]
    assert first.frames[1].payload == b"\x01" * 160
    assert outbox._queue[0].msg_id == "call-1:0"
    # A new SSRC seals what is open: one timeline per chunk.
    fork2 = RecordingFork("acme", "call-2", ChunkOutbox(), frames_per_chunk=4)
    tap = fork2.tap(LegKind.AGENT, "PCMU/8000")
    tap.add(1, 160, 1, b"\xff" * 160, 1.0)
    tap.add(1, 160, 2, b"\xff" * 160, 1.02)
    assert fork2.sequence == 1


def test_the_end_mark_seals_open_chunks_and_counts_packets() -> None:
    outbox = ChunkOutbox()
    fork = RecordingFork("acme", "call-1", outbox, wall=lambda: 50.0)
    tap = fork.tap(LegKind.CUSTOMER, "PCMU/8000")
    for index in range(3):
        tap.add(index, index * 160, 9, b"\xff" * 160, 2.0 + index * 0.02)
    fork.set_paused(True, 2.1)
    tap.add(3, 480, 9, b"\xff" * 160, 2.12)  # paused: never leaves the worker
    fork.set_paused(False, 2.3)
    fork.end(2.5)
    chunks = [decode(item.data) for item in outbox._queue]
    assert [type(chunk).__name__ for chunk in chunks] == ["AudioChunk", "PauseMark", "PauseMark", "EndOfCall"]
    assert [chunk.sequence for chunk in chunks] == [0, 1, 2, 3]
    end = chunks[-1]
    assert isinstance(end, EndOfCall)
    assert (end.arrival_us, end.packets, end.chunks_dropped) == (500_000, 3, 0)
    tap.add(4, 640, 9, b"\xff" * 160, 2.6)  # after the end: nothing more
    assert len(outbox) == 4
