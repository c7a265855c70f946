"""What one audio chunk costs the recorder itself, in CPU time: parsing it, placing its packets on the
leg's timeline, decoding G.711 and writing the WAV, plus its share of the checkpoints and of
finishing the file. No NATS, no sockets: the figure ``bench/recorder_throughput.py`` cannot isolate
on a busy machine (its wall-clock figures move with whatever else runs; process CPU time does not).

Run: ``python bench/recorder_chunk_cost.py [--calls 200] [--seconds 20] [--checkpoint-s 5]``.
Prints figures; asserts nothing. For ``--calls`` concurrent calls it builds each call's chunks as the
media worker sends them (8 packets of 20 ms per leg and chunk, both legs, 12.5 chunks a second),
applies them interleaved across the calls in arrival order (as the live subscription delivers
them) to one ``CallRecording`` per call in a temporary spool, checkpoints every call every
``--checkpoint-s`` of audio (snapshot here, persist as the recorder's thread does) and finishes each
file. It prints the CPU microseconds per chunk (applying alone, and all in), and the recordings
one core would sustain at that cost (12.5 chunks per recording per second).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from services.recorder.call_recording import CallRecording
from shared import recording
from shared.events import LegKind

FRAMES = 8
PAYLOAD = bytes(range(96, 256))  # 160 bytes of varied mu-law codes
CHUNKS_PER_S = 2 / (FRAMES * 0.02)


def call_chunks(ticks: int, started_at: float) -> list[bytes]:
    """One call's chunks in order, both legs per tick, the END mark last."""
    out = []
    sequence = 0
    for tick in range(ticks):
        first = tick * FRAMES
        for leg, ssrc, skew in ((LegKind.AGENT, 11, 0), (LegKind.CUSTOMER, 22, 3_000)):
            body = b"".join(
                recording.FRAME.pack(
                    (first + n) & 0xFFFF, ((first + n) * 160) & 0xFFFFFFFF, (first + n) * 20_000 + skew, 160
                )
                + PAYLOAD
                for n in range(FRAMES)
            )
            head = recording.header(recording.ChunkKind.AUDIO, leg, sequence, started_at, b"bench")
            out.append(head + recording.audio_head(b"PCMU/8000", ssrc, FRAMES) + body)
            sequence += 1
    end = recording.EndOfCall("bench", sequence, started_at, ticks * FRAMES * 20_000, 0, ticks * FRAMES * 2)
    out.append(recording.encode(end))
    return out


def run(calls: int, seconds: float, checkpoint_s: float) -> dict[str, object]:
    ticks = int(seconds / (FRAMES * 0.02))
    started_at = time.time()
    chunks = call_chunks(ticks, started_at)
    per_checkpoint = int(checkpoint_s * CHUNKS_PER_S)
    with tempfile.TemporaryDirectory() as directory:
        spool = Path(directory)
        recordings = [CallRecording.open(spool, f"c{n}", f"r{n}")[0] for n in range(calls)]
        applying = 0.0
        begun = time.process_time()
        for index, data in enumerate(chunks):
            moment = time.process_time()
            for call in recordings:
                call.apply(data)
            applying += time.process_time() - moment
            if index and index % per_checkpoint == 0:
                for call in recordings:
                    call.persist(call.snapshot())
        for call in recordings:
            call.finish()
            call.close()
        total = time.process_time() - begun
        assert all(call.complete for call in recordings)
    applied = calls * len(chunks)
    per_chunk_us = 1e6 * total / applied
    return {
        "calls": calls,
        "chunks": applied,
        "apply_us_per_chunk": round(1e6 * applying / applied, 1),
        "all_in_us_per_chunk": round(per_chunk_us, 1),
        "recordings_per_core_at_this_cost": round(1e6 / (per_chunk_us * CHUNKS_PER_S)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--checkpoint-s", type=float, default=5.0)
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.calls, arguments.seconds, arguments.checkpoint_s)), flush=True)


if __name__ == "__main__":
    main()
