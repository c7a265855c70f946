"""Recordings one recorder process sustains, and how soon a recording is announced after its call ends.

Run: ``python bench/recorder_throughput.py [--calls 100,500] [--seconds 30] [--call-seconds 20]
[--opus]``. Prints figures; asserts nothing. Everything stays on 127.0.0.1: a nats-server (JetStream,
store in a temporary directory), one recorder started as in production (``python -m services.recorder``,
local storage in a temporary directory, the Opus copy off unless ``--opus``), and this process playing
the media workers.

For N concurrent calls this process keeps N calls going for ``--seconds``: each call sends both legs'
G.711 chunks in real time (8 packets of 20 ms per leg every 160 ms, the worker's batching), lasts a
random 50-100% of ``--call-seconds``, ends with its END mark and is replaced by a new call at once.
Per N it prints: the recorder's CPU over the run as a share of one core (user+system from
``/proc/<pid>/stat``; with ``--opus`` the encoding process it starts is not counted: it is the
copy's cost, not the recording's), hence recordings per core; the chunks per second it took in;
nats-server's and this process's CPU share (on a small machine they share the cores with the
recorder); from each END
mark published to its ``recording.completed`` received, p50/p99 (only calls that ended in the run);
from a call's lease to its ``recording.started``, p50/p99; and the mean time of reading a call from
the stream (at claims and to fill gaps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from shared import recording, subjects
from shared.bus import Bus
from shared.events import LegKind, RecordingCompleted, RecordingFailed, RecordingStarted, parse_event
from shared.logging import configure_logging
from shared.recording import EndOfCall, RecordingLease
from shared.supervisor import free_port, nats_server_binary, wait_for_port

HOST = "127.0.0.1"
TICK_S = 0.16
FRAMES = 8
PAYLOAD = bytes(range(96, 256))  # 160 bytes of varied mu-law codes
_TICKS_PER_S = 1 / TICK_S


@dataclass
class Call:
    call_id: str
    ends_at: float
    started: float
    sequence: int = 0
    ticks: int = 0
    ended_at: float | None = None
    legs: dict[LegKind, int] = field(default_factory=lambda: {LegKind.AGENT: 11, LegKind.CUSTOMER: 22})


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric_mean(port: int, name: str) -> float:
    """Mean of a Prometheus histogram the recorder serves on /metrics."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(name + suffix + " "):
                values[suffix] = float(line.split()[1])
    return values.get("_sum", 0.0) / values["_count"] if values.get("_count") else float("nan")


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _chunks(call: Call) -> list[tuple[int, bytes]]:
    """One tick of a call: a chunk per leg, 8 frames each, RTP and arrival times advancing (built as
    the worker's fork builds them, so this process keeps up with hundreds of calls)."""
    out = []
    first = call.ticks * FRAMES
    for leg, ssrc in call.legs.items():
        skew = 3_000 if leg is LegKind.CUSTOMER else 0
        body = b"".join(
            recording.FRAME.pack(
                (first + n) & 0xFFFF, ((first + n) * 160) & 0xFFFFFFFF, (first + n) * 20_000 + skew, 160
            )
            + PAYLOAD
            for n in range(FRAMES)
        )
        head = recording.header(recording.ChunkKind.AUDIO, leg, call.sequence, call.started, b"bench")
        out.append((call.sequence, head + recording.audio_head(b"PCMU/8000", ssrc, FRAMES) + body))
        call.sequence += 1
    call.ticks += 1
    return out


async def run(
    calls: int, seconds: float, call_seconds: float, opus: bool, nats_url: str, directory: str, nats_pid: int
) -> dict[str, Any]:
    bus = await Bus.connect(nats_url, name="bench-workers", timeout=10)
    await bus.ensure_streams()
    await bus.ensure_buckets()
    kv = await bus.bucket(subjects.RECORDINGS_KV)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ECHODESK_NATS_URL": nats_url,
        "ECHODESK_INSTANCE_ID": "bench-recorder",
        "ECHODESK_LOG_LEVEL": "WARNING",
        "ECHODESK_RECORDER_HEALTH_PORT": str(free_port()),
        "ECHODESK_RECORDER_RECORDINGS_DIR": directory,
        "ECHODESK_RECORDER_CAPACITY": str(calls * 2 + 10),
        "ECHODESK_RECORDER_COMPRESSED_FORMAT": "opus" if opus else "none",
    }
    # Started once, before the measured run: a blocking start is harmless here.
    recorder = subprocess.Popen([sys.executable, "-m", "services.recorder"], env=env)  # noqa: ASYNC220
    if not wait_for_port(int(env["ECHODESK_RECORDER_HEALTH_PORT"]), 30):
        recorder.kill()
        raise SystemExit("the recorder did not start")
    await asyncio.sleep(1.0)  # its watchers and consumers up

    ended: dict[str, float] = {}
    created: dict[str, float] = {}
    latencies: list[float] = []
    claims: list[float] = []
    failures: list[str] = []

    async def on_event(msg: Msg) -> None:
        event = parse_event(msg.data)
        if isinstance(event, RecordingStarted) and event.call_id in created:
            claims.append(time.perf_counter() - created.pop(event.call_id))
        elif isinstance(event, RecordingCompleted) and event.call_id in ended:
            latencies.append(time.perf_counter() - ended.pop(event.call_id))
        elif isinstance(event, RecordingFailed):
            failures.append(event.data.reason)

    await bus.nc.subscribe(subjects.recording_events(), cb=on_event)
    lease = RecordingLease().model_dump_json().encode()
    counter = 0
    chunks_sent = 0

    async def new_call(now: float) -> Call:
        nonlocal counter
        counter += 1
        call = Call(f"b{counter}", now + call_seconds * random.uniform(0.5, 1.0), time.time())
        await kv.create(call.call_id, lease)
        created[call.call_id] = time.perf_counter()
        return call

    start = time.perf_counter()
    active = [await new_call(start) for _ in range(calls)]
    cpu_before = _cpu_seconds(recorder.pid)
    nats_before = _cpu_seconds(nats_pid)
    own_before = _cpu_seconds(os.getpid())
    measured_from = time.perf_counter()
    tick = 0
    while time.perf_counter() - start < seconds:
        now = time.perf_counter()
        for index, call in enumerate(active):
            subject = subjects.recording_audio(call.call_id)
            for sequence, data in _chunks(call):
                await bus.nc.publish(
                    subject, data, headers={"Nats-Msg-Id": recording.message_id(call.call_id, sequence)}
                )
                chunks_sent += 1
            if now >= call.ends_at:
                end = EndOfCall("bench", call.sequence, call.started, call.ticks * FRAMES * 20_000, 0, 0)
                await bus.nc.publish(subject, recording.encode(end))
                await bus.nc.flush()
                ended[call.call_id] = time.perf_counter()
                active[index] = await new_call(now)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * TICK_S - time.perf_counter()))
    wall = time.perf_counter() - measured_from
    cpu = _cpu_seconds(recorder.pid) - cpu_before
    nats_cpu = _cpu_seconds(nats_pid) - nats_before
    own_cpu = _cpu_seconds(os.getpid()) - own_before
    completed_in_run = len(latencies)
    await asyncio.sleep(3.0)  # the last ends' completions, for the latency figures only
    catch_up = _metric_mean(int(env["ECHODESK_RECORDER_HEALTH_PORT"]), "echodesk_recorder_catch_up_seconds")
    recorder.terminate()
    recorder.wait(30)
    await bus.close()
    share = cpu / wall
    return {
        "calls": calls,
        "recorder_cpu_share_of_one_core": round(share, 3),
        "recordings_per_core": round(calls / share) if share else None,
        "chunks_per_s": round(chunks_sent / wall),
        "nats_server_cpu_share": round(nats_cpu / wall, 3),
        "generator_cpu_share": round(own_cpu / wall, 3),
        "behind_real_time_s": round(time.perf_counter() - start - seconds - 3.0, 2),
        "ended": completed_in_run + len(ended),
        "end_to_completed_p50_ms": round(1000 * _percentile(latencies, 0.5), 1),
        "end_to_completed_p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "not_completed": len(ended),
        "claimed_p50_ms": round(1000 * _percentile(claims, 0.5), 1),
        "claimed_p99_ms": round(1000 * _percentile(claims, 0.99), 1),
        "catch_up_mean_ms": round(1000 * catch_up, 1),
        "failed": len(failures),
        "opus_copy": opus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="100,500")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--call-seconds", type=float, default=20.0)
    parser.add_argument("--opus", action="store_true", help="make the Opus copy after each call too")
    arguments = parser.parse_args()
    configure_logging("bench", json=False, level="WARNING")
    import uvloop

    uvloop.install()
    print(
        f"recorder, {arguments.seconds:g}s per run, calls of {arguments.call_seconds / 2:g}-"
        f"{arguments.call_seconds:g}s replaced as they end, G.711 both legs in real time"
    )
    for calls in (int(n) for n in arguments.calls.split(",")):
        with tempfile.TemporaryDirectory() as store, tempfile.TemporaryDirectory() as recordings:
            port = free_port()
            server = subprocess.Popen(
                [str(nats_server_binary()), "-a", HOST, "-p", str(port), "-js", "-sd", store],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                if not wait_for_port(port, 10):
                    raise SystemExit("nats-server did not start")
                url = f"nats://{HOST}:{port}"
                row = asyncio.run(
                    run(
                        calls,
                        arguments.seconds,
                        arguments.call_seconds,
                        arguments.opus,
                        url,
                        recordings,
                        server.pid,
                    )
                )
                print(json.dumps(row), flush=True)
            finally:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    main()
