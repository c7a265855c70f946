"""Calls per second through the whole gateway, driven by sipp on both sides.

Starts its own nats-server, a media worker and a signaling process on free loopback ports; writes
agents and a trunk to KV; sipp plays the carrier (a UAS answering 100/180/200 at once) and the
agents' desk phones (plain RTP): each call is INVITE -> 407 -> INVITE with digest -> 200, ACK,
then BYE after the talk time. Every call allocates and releases a media session on the worker
over NATS. For each offered rate it prints the achieved rate, failures, the post-dial delay the
gateway adds (the agent's authenticated INVITE to its 200, p50/p99: the carrier answers at once,
so all of it is ours: auth, dial plan, a media session over NATS, the carrier leg, the answer)
and the CPU of each process (signaling, media, nats-server) per call.

    .venv/bin/python bench/call_rate.py --rates 100,200,300 --duration 10

``--py-spy DIR`` also samples signaling and media with py-spy (``pip install py-spy``) during each
rate and writes their collapsed stacks there (``<service>-<rate>.txt``, one ``stack count`` a line,
for flame graphs or ``sort -k2 -n``), so a figure that moves can be explained.

Everything runs on 127.0.0.1 and ends by itself (sipp's -m and -timeout bound every run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sip_register import cpu_seconds  # bench/ is the script directory, first on sys.path

from shared import subjects
from shared.bus import Bus
from shared.records import TrunkRecord, agent_key, agent_record, trunk_key
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sipp import Sipp, SippResult, authentication_field

DOMAIN = "bench.test"
AGENTS = 50


async def configure(url: str, carrier_port: int) -> None:
    bus = await Bus.connect(url, name="bench", timeout=10)
    await bus.ensure_streams()
    agents = await bus.bucket(subjects.AGENTS_KV)
    for n in range(AGENTS):
        user = str(100 + n)
        record = agent_record(
            tenant_id="bench",
            agent_id=f"a{n}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=f"pw{n}",
        ).model_copy(update={"max_concurrent_calls": 100})
        await agents.put(agent_key(DOMAIN, user), record.model_dump_json().encode())
    trunk = TrunkRecord(
        tenant_id="bench",
        trunk_id="carrier",
        name="Carrier",
        sip_server="127.0.0.1",
        sip_port=carrier_port,
        registers=False,
        is_default=True,
        keepalive_s=3600,
        max_concurrent_calls=100_000,
    )
    await (await bus.bucket(subjects.TRUNKS_KV)).put(
        trunk_key("bench", "carrier"), trunk.model_dump_json().encode()
    )
    await bus.close()


def start_gateway(
    url: str, *, record: bool = False
) -> tuple[subprocess.Popen[str], subprocess.Popen[str], dict[str, str]]:
    """A media worker and a signaling process on free loopback ports, tuned to be measured:
    (media, signaling, signaling's environment, which names its ports)."""
    base = {"ECHODESK_NATS_URL": url, "ECHODESK_LOG_LEVEL": "WARNING"}
    rtp_low = 20000
    media_env = {
        **base,
        **free_ports_env("media"),
        "ECHODESK_MEDIA_BIND_ADDRESS": "127.0.0.1",
        "ECHODESK_MEDIA_PUBLIC_ADDRESS": "127.0.0.1",
        "ECHODESK_MEDIA_RTP_PORT_MIN": str(rtp_low),
        "ECHODESK_MEDIA_RTP_PORT_MAX": str(rtp_low + 8000),
        "ECHODESK_MEDIA_CAPACITY": "2000",
    }
    signaling_env = {
        **base,
        **free_ports_env("signaling"),
        "ECHODESK_SIGNALING_SIP_HOST": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_PUBLIC_HOST": "127.0.0.1",
        # The load comes from one address: measure the call path, not the flood protection.
        "ECHODESK_SIGNALING_SIP_TRUSTED_NETWORKS": "127.0.0.0/8",
        "ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5",  # sipp answers MD5 only
        # A backlog shows as delay, not as the tenant's limit refusing calls.
        "ECHODESK_SIGNALING_TENANT_MAX_CONCURRENT_CALLS": "100000",
        # Recording is measured by bench/media_bridge.py --record and bench/recorder_throughput.py;
        # here it would fork audio to a stream nobody reads, and the figures stay comparable with
        # those taken before calls were recorded by default.
        "ECHODESK_SIGNALING_RECORD_CALLS": "true" if record else "false",
    }
    media = start_service("media", media_env)
    try:
        signaling = start_service("signaling", signaling_env)
    except BaseException:
        media.kill()
        media.wait()
        raise
    return media, signaling, signaling_env


@contextlib.contextmanager
def bench_bus() -> Iterator[tuple[Path, NatsServer, list[subprocess.Popen[str]]]]:
    """A work directory, a nats-server of the bench's own in it, and a list for the service
    processes started beside it: on the way out they get SIGTERM (drained, then killed after 30 s)
    and the nats-server stops."""
    work = Path(tempfile.mkdtemp(prefix="echodesk-bench-"))
    nats = NatsServer(store_dir=work / "nats").start()
    services: list[subprocess.Popen[str]] = []
    try:
        yield work, nats, services
    finally:
        for process in reversed(services):
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        nats.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def delays_ms(result: SippResult) -> list[float]:
    """Per-call response time 1 (sipp -trace_rtt: ``date_ms;response_time_ms;rtd_no`` rows)."""
    values: list[float] = []
    for path in result.files.directory.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[2].strip() in ("1", "rtd1"):
                values.append(float(parts[1]))
    return values


def sample(directory: Path | None, rate: int, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy recorders of ``pids`` (non-blocking: the process is not paused) until interrupted."""
    if directory is None:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    directory.mkdir(parents=True, exist_ok=True)
    options = ["record", "--nonblocking", "--format", "raw", "--rate", "250"]
    return [
        subprocess.Popen(
            [spy, *options, "--pid", str(pid), "--output", str(directory / f"{name}-{rate}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,200,300", help="offered calls per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--talk-ms", type=int, default=0, help="talk time of each call")
    parser.add_argument(
        "--record",
        action="store_true",
        help="record every call (ECHODESK_SIGNALING_RECORD_CALLS); off by default: no recorder runs here",
    )
    parser.add_argument("--py-spy", type=Path, help="write py-spy's collapsed stacks of each rate here")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]

    with bench_bus() as (work, nats, services):
        carrier = Sipp(
            "carrier_answer_uas",
            work / "carrier",
            calls=sum(int(rate * args.duration) for rate in rates) + 1,  # + the trunk's OPTIONS probe
            timeout=len(rates) * (args.duration * 3 + 20) + 60,
            recv_timeout=30,
            trace_messages=False,
        )
        try:
            url = nats.url
            carrier.start()
            asyncio.run(configure(url, carrier.port))
            media, signaling, signaling_env = start_gateway(url, record=args.record)
            services += [media, signaling]
            time.sleep(1.0)  # the trunk's first OPTIONS probe
            sip_port = int(signaling_env["ECHODESK_SIGNALING_SIP_UDP_PORT"])
            injection = [
                [str(100 + n), authentication_field(str(100 + n), f"pw{n}"), DOMAIN, "555123456"]
                for n in range(AGENTS)
            ]
            print(
                f"signaling pid {signaling.pid}, media pid {media.pid}, UDP, {args.duration:g} s per rate\n"
            )
            print(
                f"{'offered/s':>10}{'achieved/s':>12}{'ok':>7}{'failed':>8}"
                f"{'pdd p50 ms':>12}{'pdd p99 ms':>12}"
                f"{'sig ms/call':>13}{'media ms/call':>15}{'nats ms/call':>14}"
            )
            assert nats.process is not None
            pids = (signaling.pid, media.pid, nats.process.pid)
            for rate in rates:
                before = [cpu_seconds(pid) for pid in pids]
                run = Sipp(
                    "agent_call_uac",
                    work / f"agents-{rate}",
                    remote=("127.0.0.1", sip_port),
                    injection=injection,
                    calls=int(rate * args.duration),
                    rate=rate,
                    timeout=args.duration * 3 + 20,
                    trace_messages=False,
                    auth_uri=DOMAIN,
                    limit=max(200, rate),
                    extra_args=("-d", str(args.talk_ms), "-trace_rtt", "-rtt_freq", "1"),
                )
                samplers = sample(args.py_spy, rate, {"signaling": signaling.pid, "media": media.pid})
                started = time.monotonic()
                result = run.run()
                elapsed = time.monotonic() - started
                for sampler in samplers:
                    sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                    sampler.wait(30)
                used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
                ok = result.successful
                pdd = delays_ms(result)
                per_call = [u / ok * 1000 if ok else float("nan") for u in used]
                print(
                    f"{rate:>10}{ok / elapsed:>12.0f}{ok:>7}{result.failed:>8}"
                    f"{percentile(pdd, 0.5):>12.2f}{percentile(pdd, 0.99):>12.2f}"
                    f"{per_call[0]:>13.2f}{per_call[1]:>15.2f}{per_call[2]:>14.2f}"
                )
                if result.failed:
                    print(f"  failures: {result.failure_reasons}")
            if pdd:
                print(f"\nlast rate: {len(pdd)} delays, mean {statistics.fmean(pdd):.2f} ms")
        finally:
            if carrier.process is not None:
                carrier.stop()


if __name__ == "__main__":
    main()
