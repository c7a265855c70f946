"""What recording adds to the media worker, in CPU time: per packet on the packet path, per chunk in
the publishing task.

Run: ``python bench/recording_fork.py [--packets 200000] [--chunks 20000]``. Prints figures; asserts
nothing. CPU time (``time.process_time``), not wall time, so a busy machine blurs them less than it
blurs ``bench/media_bridge.py --record``, which measures the same thing inside whole calls.

- per packet: :meth:`LegTap.add` as a relay calls it (160-byte G.711 payloads, 20 ms apart, both
  legs), including sealing every eighth packet into a chunk and offering it to the outbox;
- per chunk: :class:`ChunkOutbox` publishing those chunks to a JetStream on a nats-server this script
  starts on loopback (store in a temporary directory; the server's own CPU is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time

from services.media.chunk_outbox import ChunkOutbox
from services.media.recording_fork import RecordingFork
from shared.bus import Bus
from shared.events import LegKind
from shared.logging import configure_logging
from shared.supervisor import free_port, nats_server_binary, wait_for_port

HOST = "127.0.0.1"
PAYLOAD = bytes(range(96, 256))


def fork_cost(packets: int) -> tuple[float, ChunkOutbox]:
    outbox = ChunkOutbox(capacity=packets)
    fork = RecordingFork("bench", "c1", outbox)
    agent = fork.tap(LegKind.AGENT, "PCMU/8000")
    customer = fork.tap(LegKind.CUSTOMER, "PCMU/8000")
    started = time.process_time()
    for index in range(packets // 2):
        now = index * 0.02
        agent.add(index & 0xFFFF, (index * 160) & 0xFFFFFFFF, 1, PAYLOAD, now)
        customer.add(index & 0xFFFF, (index * 160) & 0xFFFFFFFF, 2, PAYLOAD, now + 0.003)
    return (time.process_time() - started) / packets, outbox


async def publish_cost(chunks: int, url: str) -> tuple[float, int]:
    bus = await Bus.connect(url, name="bench-fork", timeout=10)
    await bus.ensure_streams()
    _, outbox = fork_cost(chunks * 8)
    queued = len(outbox)
    started = time.process_time()
    await outbox.flush(bus, timeout=120)
    cost = (time.process_time() - started) / queued
    await bus.close()
    return cost, outbox.published


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--chunks", type=int, default=20_000)
    arguments = parser.parse_args()
    configure_logging("bench", json=False, level="WARNING")
    import uvloop

    uvloop.install()
    per_packet, _ = fork_cost(arguments.packets)
    with tempfile.TemporaryDirectory() as store:
        port = free_port()
        server = subprocess.Popen(
            [str(nats_server_binary()), "-a", HOST, "-p", str(port), "-js", "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not wait_for_port(port, 10):
                raise SystemExit("nats-server did not start")
            per_chunk, published = asyncio.run(publish_cost(arguments.chunks, f"nats://{HOST}:{port}"))
        finally:
            server.terminate()
            server.wait(10)
    # A call: 50 packets a second each way, 12.5 chunks a second.
    per_call = 100 * per_packet + 12.5 * per_chunk
    print(
        f"tap per packet {per_packet * 1e6:.2f} us CPU; publishing per chunk {per_chunk * 1e6:.1f} us CPU "
        f"({published} published); per recorded call {per_call * 1e3:.3f} ms CPU per second"
    )


if __name__ == "__main__":
    main()
