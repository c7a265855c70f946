"""A recorder whose disk fills up in the middle of a recording: a real ENOSPC from a 512 KiB tmpfs
mounted, for that recorder process alone, in a private mount namespace the test creates
(``unshare -m``; ``-rm`` with a user namespace when not root). Its writes are retried, then
``recording.failed`` names the disk; the audio stays in JetStream, the lease goes back, and a
recorder with space makes the very file an undisturbed recorder makes. A call another recorder
records meanwhile, on another disk, goes on."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import subjects
from shared.bus import Bus
from shared.events import LegKind, RecordingCompleted, RecordingFailed
from shared.recording import RecordingLease
from shared.supervisor import free_port
from tests.recorder.conftest import RecordingEvents, StartRecorder
from tests.support.nats import NatsServer
from tests.support.processes import get_json, health_url
from tests.support.recording import Chunk, LegAudio, call_chunks, publish_chunks, request_recording

pytestmark = pytest.mark.needs_nats

#: A 20 s stereo call is 640 KB of WAV: it cannot fit.
DISK = "512k"


def _tones(seconds: float) -> list[Chunk]:
    return call_chunks(
        "acme", [LegAudio(LegKind.AGENT, 440, ssrc=7), LegAudio(LegKind.CUSTOMER, 1000, ssrc=8)], seconds
    )


def _on_a_small_disk(directory: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``python -m services.recorder`` with a tmpfs of :data:`DISK` mounted on ``directory`` in a
    mount namespace of its own: nothing outside the process sees the mount."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed: apt-get install util-linux"
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    script = 'mount -t tmpfs -o size="$1" echodesk-small-disk "$2" && shift 2 && exec "$@"'
    command = [unshare, *flags, "--propagation", "private", "sh", "-c", script, "sh", DISK, str(directory)]
    process = subprocess.Popen(
        [*command, sys.executable, "-m", "services.recorder"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def _owner(bus: Bus, call_id: str) -> str | None:
    kv = await bus.bucket(subjects.RECORDINGS_KV)
    try:
        entry = await kv.get(call_id)
    except Exception:
        return None
    return RecordingLease.model_validate_json(entry.value or b"{}").owner


async def test_a_full_disk_fails_the_recording_with_the_disk_and_a_recorder_with_space_completes_it(
    bus: Bus,
    nats_server: NatsServer,
    start_recorder: StartRecorder,
    recording_events: RecordingEvents,
    tmp_path: Path,
) -> None:
    # The file an undisturbed recorder makes of the same call.
    reference = await start_recorder("ref", tmp_path / "reference", compressed_format="none")
    await request_recording(bus, "call-reference")
    await publish_chunks(bus, "call-reference", _tones(20.0))
    expected = await recording_events.next("call-reference", "recording.completed")
    assert isinstance(expected, RecordingCompleted)
    await reference.stop()

    # A recorder on another disk is busy with another call (it has room for one)...
    await start_recorder("r-space", tmp_path / "space", capacity=1, compressed_format="none")
    other = _tones(3.0)
    await request_recording(bus, "call-other")
    await publish_chunks(bus, "call-other", other[:-1])
    async with asyncio.timeout(20):
        while await _owner(bus, "call-other") != "r-space":
            await asyncio.sleep(0.05)

    # ... when the recorder on the small disk takes a call longer than its disk.
    small = tmp_path / "small-disk"
    small.mkdir()
    env = {
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_INSTANCE_ID": "r-full",
        "ECHODESK_RECORDER_RECORDINGS_DIR": str(small),
        "ECHODESK_RECORDER_HEALTH_PORT": str(free_port()),
        "ECHODESK_RECORDER_CAPACITY": "1",
        "ECHODESK_RECORDER_LEASE_S": "2",
        "ECHODESK_RECORDER_CHECKPOINT_INTERVAL_S": "0.2",
        "ECHODESK_RECORDER_DISK_RETRY_S": "2",
        "ECHODESK_RECORDER_COMPRESSED_FORMAT": "none",
    }
    full = _on_a_small_disk(small, env)
    try:
        url = health_url("recorder", env)
        await _until(lambda: get_json(url)[0] == 200 or full.poll() is not None)
        assert full.poll() is None, full.communicate()[0]
        # The tmpfs is the recorder's alone: here the directory is still the test's empty one.
        assert list(small.iterdir()) == []

        await request_recording(bus, "call-full")
        await publish_chunks(bus, "call-full", _tones(20.0))

        failed = await recording_events.next("call-full", "recording.failed", timeout=30)
        assert isinstance(failed, RecordingFailed)
        reason = failed.data.reason
        assert reason.startswith("disk full: cannot write "), reason
        assert str(small) in reason, reason
        assert "No space left on device" in reason, reason
        assert "RECORDING_AUDIO" in reason, reason
        assert failed.source == "recorder/r-full"
        # The audio waits in JetStream for a recorder with space; the full one is still up.
        info = await bus.js.stream_info(
            subjects.RECORDING_AUDIO.name, subjects_filter=subjects.recording_audio("call-full")
        )
        waiting = info.state.subjects or {}
        assert waiting.get(subjects.recording_audio("call-full")) == len(_tones(20.0))
        assert full.poll() is None

        # Nothing else was disturbed: the other call completes on its recorder.
        await publish_chunks(bus, "call-other", other[-1:])
        done = await recording_events.next("call-other", "recording.completed")
        assert done.source == "recorder/r-space"
        assert "recording.failed" not in recording_events.of("call-other")

        # Free again, the recorder with space takes the call over and makes the undisturbed file.
        completed = await recording_events.next("call-full", "recording.completed", timeout=60)
        assert isinstance(completed, RecordingCompleted)
        assert completed.source == "recorder/r-space"
        assert completed.data.sha256 == expected.data.sha256
        assert completed.data.chunks_missing == 0
        assert full.poll() is None
    finally:
        if full.poll() is None:
            full.terminate()
        try:
            full.wait(20)
        except subprocess.TimeoutExpired:
            full.kill()
            full.wait(10)
