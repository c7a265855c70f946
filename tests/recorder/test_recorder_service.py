"""The recorder on a real nats-server: chunks in the stream as a media worker sends them, files out.

The audio is real G.711 (a 440 Hz tone on the agent's leg, 1 kHz on the customer's) and every check
reads the WAV the recorder stored: which channel carries which tone, for how long, and silence exactly
where packets were missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from shared import recording, subjects
from shared.bus import Bus, RemoteError
from shared.events import (
    CallEnded,
    CallEndedData,
    CallStatus,
    EndCause,
    LegKind,
    Party,
    RecordingCompleted,
    RecordingCompressed,
    RecordingDeleted,
    RecordingFailed,
)
from shared.recording import AudioChunk, Chunk, DeleteRecording, RecordingDeletion, RecordingLease
from shared.supervisor import free_port
from tests.recorder.conftest import RecordingEvents, StartRecorder
from tests.support.nats import NatsServer
from tests.support.processes import start_service
from tests.support.recording import (
    FRAME,
    LegAudio,
    call_chunks,
    publish_chunks,
    read_wav,
    request_recording,
)
from tests.support.rtp_peer import _ULAW, analyse, tone

TENANT = "acme"
SECONDS = 3.0
#: The agent loses 1.00-1.20 s, the customer 2.00-2.10 s.
AGENT_LOST = frozenset(range(50, 60))
CUSTOMER_LOST = frozenset(range(100, 105))


def two_tones(seconds: float = SECONDS) -> list[Chunk]:
    return call_chunks(
        TENANT,
        [
            # Timestamps start 40 packets before the 32-bit wrap: positions must not jump at it.
            LegAudio(LegKind.AGENT, 440, ssrc=0x1111, lost=AGENT_LOST, first_timestamp=2**32 - 40 * FRAME),
            LegAudio(LegKind.CUSTOMER, 1000, ssrc=0x2222, lost=CUSTOMER_LOST, first_sequence=65500),
        ],
        seconds,
    )


def stored_path(event: RecordingCompleted) -> Path:
    location = urlparse(event.data.location)
    assert location.scheme == "file"
    return Path(location.path)


async def record(
    bus: Bus, events: RecordingEvents, call_id: str, chunks: list[Chunk] | list[bytes]
) -> RecordingCompleted:
    await request_recording(bus, call_id)
    await publish_chunks(bus, call_id, chunks)
    completed = await events.next(call_id, "recording.completed")
    assert isinstance(completed, RecordingCompleted)
    return completed


def _glob(directory: Path, pattern: str) -> list[Path]:
    return list(directory.glob(pattern))


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_two_tones_land_left_and_right_with_silence_where_packets_were_lost(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents
) -> None:
    await start_recorder("r1")
    completed = await record(bus, recording_events, "call-tones", two_tones())

    path = stored_path(completed)
    left, right, rate = read_wav(path)
    assert rate == 8000
    assert len(left) == int(SECONDS * rate)  # first packet to the END mark, to the sample
    assert completed.data.duration_s == SECONDS
    assert (completed.data.channels, completed.data.sample_rate, completed.data.format) == (2, 8000, "wav")
    assert completed.data.size_bytes == path.stat().st_size == 44 + len(left) * 4
    assert completed.data.sha256 == sha256(path)
    assert completed.data.chunks_missing == 0
    # Object keys by tenant and the call's date (UTC).
    assert completed.data.location.endswith(f"/acme/2025/11/25/call-tones-{completed.data.recording_id}.wav")

    # The agent's tone, exactly its decoded samples, on the left; the customer's on the right.
    assert np.array_equal(left[:FRAME], _ULAW[np.frombuffer(tone(440, 0), dtype=np.uint8)])
    assert abs(analyse(left[:8000])["dominant_hz"] - 440) <= 2
    assert abs(analyse(right[:8000])["dominant_hz"] - 1000) <= 2
    assert analyse(left[:8000])["purity"] > 0.9
    # Silence of exactly the lost packets' length, and audio right around it.
    assert not left[8000:9600].any()
    assert left[7840:8000].all() or analyse(left[7840:8000])["rms"] > 1000
    assert analyse(left[9600:9760])["rms"] > 1000
    assert not right[16000:16800].any()
    assert analyse(right[15840:16000])["rms"] > 1000
    assert analyse(right[16800:16960])["rms"] > 1000
    # No silence anywhere else.
    for channel, lost in ((left, AGENT_LOST), (right, CUSTOMER_LOST)):
        for index in range(int(SECONDS * 50)):
            if index not in lost:
                assert analyse(channel[index * FRAME : (index + 1) * FRAME])["rms"] > 1000, index

    assert recording_events.of("call-tones")[:2] == ["recording.started", "recording.completed"]
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["sha256"] == completed.data.sha256
    assert metadata["channels"] == {"left": "agent", "right": "customer"}
    assert metadata["packets"] == 2 * 150 - len(AGENT_LOST) - len(CUSTOMER_LOST)

    # Done: the call's chunks are purged, its lease marked done, and an Opus copy follows.
    compressed = await recording_events.next("call-tones", "recording.compressed", timeout=90)
    assert isinstance(compressed, RecordingCompressed)
    ogg = Path(urlparse(compressed.data.location).path)
    assert _head(ogg) == b"OggS"
    assert compressed.data.sha256 == sha256(ogg)
    assert compressed.data.size_bytes < completed.data.size_bytes / 4
    info = await bus.js.stream_info(subjects.RECORDING_AUDIO.name, subjects_filter=subjects.recording_audio())
    assert "recordings.audio.call-tones" not in (info.state.subjects or {})
    assert (await _lease(bus, "call-tones")).done_at is not None


async def test_duplicates_reordering_and_garbage_give_the_same_file_as_a_clean_stream(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents
) -> None:
    recorder = await start_recorder("r1")
    clean = await record(bus, recording_events, "call-clean", two_tones())

    chunks = two_tones()
    end = chunks.pop()
    shuffled = [recording.encode(chunk) for chunk in chunks]
    for at in range(0, len(shuffled) - 1, 2):  # every pair swapped: out of order
        shuffled[at], shuffled[at + 1] = shuffled[at + 1], shuffled[at]
    rng = random.Random(7)
    garbage = [
        b"",
        b"EDRC",
        b"not a chunk at all",
        shuffled[3][:-5],  # cut short
        shuffled[4] + b"\x00",  # trailing bytes
        b"EDRX" + shuffled[5][4:],  # wrong magic
        shuffled[6][:4] + b"\x09" + shuffled[6][5:],  # unknown version
        bytes(rng.randrange(256) for _ in range(300)),
    ]
    messy: list[bytes] = []
    for index, data in enumerate(shuffled):
        messy.append(data)
        if index % 5 == 0:
            messy.append(data)  # a duplicate the server cannot catch (published without a msg id)
        if index % 9 == 0 and garbage:
            messy.append(garbage.pop())
    messy += garbage
    messy.append(recording.encode(end))
    # Claimed first, so every message comes live: a bad message published in the very instant of a
    # claim can miss both the live subscription and the read of the stream, and unlike a chunk it
    # leaves no gap behind to be read again.
    await request_recording(bus, "call-messy")
    await _until(
        lambda: "call-messy" in recorder.active and recorder.active["call-messy"].subscription is not None
    )
    assert recorder._ctx is not None
    await recorder._ctx.bus.nc.flush()  # the server has the recorder's subscription
    await publish_chunks(bus, "call-messy", messy)
    completed = await recording_events.next("call-messy", "recording.completed")
    assert isinstance(completed, RecordingCompleted)

    assert completed.data.sha256 == clean.data.sha256
    metadata = json.loads(stored_path(completed).with_suffix(".json").read_text())
    assert metadata["malformed"] == 8
    # Counted as they were skipped (how many depends on which came live and which from the stream).
    assert metadata["duplicates"] >= 1


async def test_an_unknown_codec_fails_the_recording_with_the_reason(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents
) -> None:
    await start_recorder("r1")
    chunks = call_chunks(TENANT, [LegAudio(LegKind.AGENT, 440, ssrc=1)], 1.0, codec="opus/48000/2")
    await request_recording(bus, "call-opus")
    await publish_chunks(bus, "call-opus", chunks)
    failed = await recording_events.next("call-opus", "recording.failed")
    assert isinstance(failed, RecordingFailed)
    assert "opus/48000/2" in failed.data.reason
    assert "PCMU/8000" in failed.data.reason
    assert "recording.completed" not in recording_events.of("call-opus")


async def test_a_paused_span_is_silent_and_marked(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents
) -> None:
    await start_recorder("r1")
    legs = [LegAudio(LegKind.AGENT, 440, ssrc=1), LegAudio(LegKind.CUSTOMER, 1000, ssrc=2)]
    completed = await record(
        bus, recording_events, "call-pause", call_chunks(TENANT, legs, 3.0, pause=(1.0, 2.0))
    )
    left, right, _ = read_wav(stored_path(completed))
    assert len(left) == 24000
    assert not left[8000:16000].any()
    assert not right[8000:16000].any()
    assert analyse(left[16000:17600])["rms"] > 1000
    assert completed.data.paused_s == 1.0
    metadata = json.loads(stored_path(completed).with_suffix(".json").read_text())
    assert metadata["paused"] == [{"from_s": 1.0, "to_s": 2.0}]


async def test_a_call_without_audio_fails_rather_than_storing_an_empty_file(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents
) -> None:
    await start_recorder("r1")
    chunks = call_chunks(TENANT, [LegAudio(LegKind.AGENT, 440, ssrc=1, lost=frozenset(range(50)))], 1.0)
    assert not any(isinstance(chunk, AudioChunk) for chunk in chunks)
    await request_recording(bus, "call-silent")
    await publish_chunks(bus, "call-silent", chunks)
    failed = await recording_events.next("call-silent", "recording.failed")
    assert isinstance(failed, RecordingFailed)
    assert "no audio" in failed.data.reason


async def test_only_one_of_several_recorders_records_a_call(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents, tmp_path: Path
) -> None:
    # No Opus copy here (its own test has one): the spools empty as each recording is stored.
    recorders = [
        await start_recorder(f"r{n}", tmp_path / f"dir{n}", compressed_format="none") for n in range(3)
    ]
    calls = [f"call-many-{n}" for n in range(6)]
    for call_id in calls:
        await record(bus, recording_events, call_id, two_tones(1.0))
    await _until(lambda: all(not recorder.active for recorder in recorders))
    for call_id in calls:
        # Each recorder stores into its own directory: one file per call means one recorder wrote it.
        stored = _glob(tmp_path, f"dir*/acme/2025/11/25/{call_id}-*.wav")
        assert len(stored) == 1, stored
        assert recording_events.of(call_id).count("recording.completed") == 1
        assert recording_events.of(call_id).count("recording.started") == 1
    await _until(lambda: not _glob(tmp_path, "dir*/.spool/call-many-*"))


@pytest.mark.parametrize("shared_spool", [True, False], ids=["resumes-from-spool", "rebuilds-from-stream"])
async def test_a_recorder_killed_mid_call_is_replaced_and_the_file_has_no_hole(
    bus: Bus,
    nats_server: NatsServer,
    start_recorder: StartRecorder,
    recording_events: RecordingEvents,
    tmp_path: Path,
    shared_spool: bool,
) -> None:
    # The file an uninterrupted recorder makes of the same call.
    reference = await start_recorder("ref", tmp_path / "reference")
    expected = await record(bus, recording_events, "call-reference", two_tones())
    await reference.stop()

    first_dir = tmp_path / "first"
    env = {
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_INSTANCE_ID": "doomed",
        "ECHODESK_RECORDER_RECORDINGS_DIR": str(first_dir),
        "ECHODESK_RECORDER_HEALTH_PORT": str(free_port()),
        "ECHODESK_RECORDER_LEASE_S": "2",
        "ECHODESK_RECORDER_CHECKPOINT_INTERVAL_S": "0.2",
    }
    doomed = start_service("recorder", env)
    try:
        chunks = two_tones()
        quarter, half = len(chunks) // 4, len(chunks) // 2
        await request_recording(bus, "call-killed")
        await publish_chunks(bus, "call-killed", chunks[:quarter])
        state = first_dir / ".spool" / "call-killed.json"
        await _until(lambda: state.exists() and json.loads(state.read_text())["chunks"] > 0)
        # More audio, and the kill right behind it: some of it applied, probably not checkpointed.
        await publish_chunks(bus, "call-killed", chunks[quarter:half])
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.wait(10)
    checkpointed = json.loads(state.read_text())
    assert checkpointed["chunks"] > 0
    assert checkpointed["end"] is None
    assert "recording.completed" not in recording_events.of("call-killed")

    await start_recorder("successor", first_dir if shared_spool else tmp_path / "second")
    await publish_chunks(bus, "call-killed", chunks[half:])
    completed = await recording_events.next("call-killed", "recording.completed")
    assert isinstance(completed, RecordingCompleted)
    assert completed.data.sha256 == expected.data.sha256
    assert completed.source == "recorder/successor"
    assert recording_events.of("call-killed").count("recording.started") == 1
    assert (await _lease(bus, "call-killed")).claims == 2


async def _lease(bus: Bus, call_id: str) -> RecordingLease:
    kv = await bus.bucket(subjects.RECORDINGS_KV)
    entry = await kv.get(call_id)
    assert entry.value is not None
    return RecordingLease.model_validate_json(entry.value)


async def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_a_draining_recorder_hands_its_calls_back_and_another_finishes_them(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents, tmp_path: Path
) -> None:
    reference = await start_recorder("ref", tmp_path / "reference")
    expected = await record(bus, recording_events, "call-drain-reference", two_tones())
    await reference.stop()

    leaving = await start_recorder("leaving", tmp_path / "shared", lease_s=30.0)
    chunks = two_tones()
    half = len(chunks) // 2
    await request_recording(bus, "call-drained")
    await publish_chunks(bus, "call-drained", chunks[:half])
    await _until(lambda: "call-drained" in leaving.active)
    await leaving.drain()  # what SIGTERM does
    assert not leaving.active
    lease = await _lease(bus, "call-drained")
    # Handed back at once: nobody waits for a 30 s lease to run out.
    assert lease.owner is None
    assert lease.expires_at == 0

    await start_recorder("staying", tmp_path / "shared")
    await publish_chunks(bus, "call-drained", chunks[half:])
    completed = await recording_events.next("call-drained", "recording.completed")
    assert isinstance(completed, RecordingCompleted)
    assert completed.source == "recorder/staying"
    assert completed.data.sha256 == expected.data.sha256


def _media_lost(call_id: str) -> CallEnded:
    return CallEnded(
        tenant_id=TENANT,
        call_id=call_id,
        sequence=9,
        data=CallEndedData(
            status=CallStatus.FAILED,
            cause=EndCause.MEDIA_FAILURE,
            ended_by=Party.SYSTEM,
            message="Media server lost",
            duration_s=3.0,
        ),
    )


@pytest.mark.parametrize("ended", ["after the claim", "before the claim"])
async def test_a_call_whose_worker_died_is_finished_when_the_call_ends_without_its_end_mark(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents, ended: str
) -> None:
    """call.ended comes live, or (published before this recorder held the recording, so never seen
    live) is read from CALL_EVENTS once the audio has stopped."""
    chunks = two_tones()
    if ended == "before the claim":
        await bus.publish_event(_media_lost("call-orphan"))
    await start_recorder("r1", end_mark_grace_s=0.5)
    await request_recording(bus, "call-orphan")
    await publish_chunks(bus, "call-orphan", chunks[:-1])  # the worker died: no END mark
    if ended == "after the claim":
        await bus.publish_event(_media_lost("call-orphan"))
    completed = await recording_events.next("call-orphan", "recording.completed")
    assert isinstance(completed, RecordingCompleted)
    left, right, _ = read_wav(stored_path(completed))
    # Up to its last packet (the customer's last chunk ends at 3 s too).
    assert len(left) == int(SECONDS * 8000)
    assert abs(analyse(right[:8000])["dominant_hz"] - 1000) <= 2
    metadata = json.loads(stored_path(completed).with_suffix(".json").read_text())
    assert metadata["end_mark"] is False


async def test_deleting_a_recording_on_request_removes_its_files_and_says_so(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents, tmp_path: Path
) -> None:
    await start_recorder("r1")
    completed = await record(bus, recording_events, "call-erase", two_tones(1.0))
    await recording_events.next("call-erase", "recording.compressed", timeout=90)
    wav = stored_path(completed)
    assert sorted(p.suffix for p in _glob(wav.parent, "call-erase-*")) == [".json", ".ogg", ".wav"]
    request = DeleteRecording(
        tenant_id=TENANT,
        call_id="call-erase",
        recording_id=completed.data.recording_id,
        location=completed.data.location,
        reason="erasure request 4711",
    )
    # Another tenant cannot reach it, nor can a location outside the store.
    for wrong in (
        request.model_copy(update={"tenant_id": "other"}),
        request.model_copy(update={"location": (tmp_path / "elsewhere.wav").as_uri()}),
        request.model_copy(update={"recording_id": "someone-else"}),
    ):
        with pytest.raises(RemoteError) as refused:
            await bus.request(subjects.recording_command("delete"), wrong, RecordingDeletion)
        assert refused.value.code == "bad_location"
    assert _glob(wav.parent, "call-erase-*")

    reply = await bus.request(subjects.recording_command("delete"), request, RecordingDeletion)
    assert len(reply.deleted) == 3
    assert not _glob(wav.parent, "call-erase-*")
    deleted = await recording_events.next("call-erase", "recording.deleted")
    assert isinstance(deleted, RecordingDeleted)
    assert deleted.data.reason == "erasure request 4711"
    assert deleted.data.locations == reply.deleted
    # Asking again deletes nothing more and is no error.
    again = await bus.request(subjects.recording_command("delete"), request, RecordingDeletion)
    assert again.deleted == []
