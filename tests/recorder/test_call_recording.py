"""One recording's state (services/recorder/call_recording.py) fed chunks directly, without a bus.

The recorder reads a call's chunks both live and from the stream, so they can be applied in any
order: the file must not depend on it."""

from __future__ import annotations

import random
from pathlib import Path

from services.recorder.call_recording import CallRecording
from shared import recording
from shared.events import LegKind
from shared.recording import Chunk, PauseMark
from tests.support.recording import LegAudio, call_chunks, read_wav
from tests.support.rtp_peer import analyse

TENANT = "acme"
LEGS = [LegAudio(LegKind.AGENT, 440, ssrc=1), LegAudio(LegKind.CUSTOMER, 1000, ssrc=2)]


def _recorded(directory: Path, chunks: list[Chunk]) -> tuple[CallRecording, bytes]:
    call, _ = CallRecording.open(directory, "call-1", "rec-1")
    for chunk in chunks:
        call.apply(recording.encode(chunk))
    call.finish()
    call.close()
    return call, call.wav_path.read_bytes()


def test_a_resume_mark_applied_before_its_pause_mark_still_ends_the_pause(tmp_path: Path) -> None:
    chunks = call_chunks(TENANT, LEGS, 3.0, pause=(1.0, 2.0))
    marks = [index for index, chunk in enumerate(chunks) if isinstance(chunk, PauseMark)]
    assert len(marks) == 2
    swapped = list(chunks)
    swapped[marks[0]], swapped[marks[1]] = swapped[marks[1]], swapped[marks[0]]

    call, _ = _recorded(tmp_path, swapped)

    left, right, _ = read_wav(call.wav_path)
    assert len(left) == 24000
    assert not left[8000:16000].any()
    assert not right[8000:16000].any()
    assert analyse(left[16000:17600])["rms"] > 1000
    assert analyse(right[16000:17600])["rms"] > 1000
    assert call.paused_s == 1.0
    assert call.metadata()["paused"] == [{"from_s": 1.0, "to_s": 2.0}]


def test_any_order_of_the_chunks_gives_the_same_file(tmp_path: Path) -> None:
    chunks = call_chunks(TENANT, LEGS, 3.0, pause=(1.0, 2.0))
    _, in_order = _recorded(tmp_path / "ordered", chunks)
    rng = random.Random(4475)
    for attempt in range(5):
        shuffled = list(chunks)
        rng.shuffle(shuffled)
        _, out_of_order = _recorded(tmp_path / f"shuffled-{attempt}", shuffled)
        assert out_of_order == in_order


def test_a_pause_left_open_runs_to_the_end_of_the_call(tmp_path: Path) -> None:
    chunks = [c for c in call_chunks(TENANT, LEGS, 3.0, pause=(2.0, 3.5)) if not _resumes(c)]
    call, _ = _recorded(tmp_path, chunks)
    left, right, _ = read_wav(call.wav_path)
    assert len(left) == 24000
    assert analyse(left[8000:9600])["rms"] > 1000
    assert not left[16000:].any()
    assert not right[16000:].any()
    assert call.paused_s == 1.0
    assert call.metadata()["paused"] == [{"from_s": 2.0, "to_s": 3.0}]


def _resumes(chunk: Chunk) -> bool:
    return isinstance(chunk, PauseMark) and not chunk.paused
