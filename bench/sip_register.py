"""Authenticated REGISTERs and OPTIONS per second through the signaling service, driven by sipp.

Starts its own nats-server and signaling process on free loopback ports, writes N agents to KV,
then lets sipp register them (REGISTER -> 401 -> REGISTER with digest -> 200, a fresh Call-ID
each) at a fixed offered rate for a fixed time, and prints the achieved rate, failures, the
registration response time and the signaling process's CPU (so: CPU per registration, and
registrations per CPU-second = per core). Then the same for OPTIONS.

    .venv/bin/python bench/sip_register.py --rates 1000,2000,3000 --duration 8

Everything runs on 127.0.0.1 and ends by itself (sipp's -m and -timeout bound every run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import subjects
from shared.bus import Bus
from shared.records import agent_key, agent_record
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sipp import Sipp, authentication_field

DOMAIN = "bench.test"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` from /proc (utime and stime are fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def put_agents(url: str, count: int) -> None:
    bus = await Bus.connect(url, name="bench", timeout=10)
    kv = await bus.bucket(subjects.AGENTS_KV)
    for n in range(count):
        user = str(10000 + n)
        record = agent_record(
            tenant_id="bench",
            agent_id=f"a{n}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=f"pw{n}",
        )
        await kv.put(agent_key(DOMAIN, user), record.model_dump_json().encode())
    await bus.close()


def run_sipp(
    scenario: str,
    work: Path,
    port: int,
    rate: int,
    duration: float,
    injection: list[list[str]] | None,
    auth: bool,
) -> tuple[float, int, int, float, float]:
    """(achieved rate, successful, failed, response time ms, elapsed) for one offered rate."""
    calls = int(rate * duration)
    run = Sipp(
        scenario,
        work / f"{scenario}-{rate}",
        remote=("127.0.0.1", port),
        injection=injection,
        calls=calls,
        rate=rate,
        timeout=duration * 3 + 10,
        trace_messages=False,
        auth_uri=DOMAIN if auth else None,
        limit=max(200, rate // 2),
    )
    started = time.monotonic()
    result = run.run()
    elapsed = time.monotonic() - started
    return result.successful / elapsed, result.successful, result.failed, result.response_time(1), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="500,1000,2000", help="offered REGISTER rates per second")
    parser.add_argument("--options-rates", default="2000,4000", help="offered OPTIONS rates per second")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per rate")
    parser.add_argument("--agents", type=int, default=2000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="echodesk-bench-"))
    nats = NatsServer(store_dir=work / "nats").start()
    signaling = None
    try:
        url = nats.url
        asyncio.run(put_agents(url, args.agents))
        env = {
            **free_ports_env("signaling"),
            "ECHODESK_NATS_URL": url,
            "ECHODESK_LOG_LEVEL": "WARNING",
            # The load comes from one address: measure the SIP path, not the flood protection.
            "ECHODESK_SIGNALING_SIP_TRUSTED_NETWORKS": "127.0.0.0/8",
            "ECHODESK_SIGNALING_SIP_MAX_EXPIRES": "3600",
            # sipp answers MD5 only, and gives up on a SHA-256 challenge instead of reading the next.
            "ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5",
        }
        signaling = start_service("signaling", env)
        sip_port = int(env["ECHODESK_SIGNALING_SIP_UDP_PORT"])
        injection = [
            [str(10000 + n), authentication_field(str(10000 + n), f"pw{n}"), DOMAIN, "3600"]
            for n in range(args.agents)
        ]
        print(f"signaling pid {signaling.pid}, {args.agents} agents, UDP, {args.duration:g} s per rate\n")
        print(
            f"{'kind':<9}{'offered/s':>10}{'achieved/s':>12}{'ok':>8}{'failed':>8}{'resp ms':>9}"
            f"{'cpu %':>8}{'cpu us/op':>11}{'ops per cpu-s':>15}"
        )
        for kind, rates, scenario, inject in (
            ("REGISTER", args.rates, "register_bench_uac", injection),
            ("OPTIONS", args.options_rates, "options_uac", None),
        ):
            for rate in (int(r) for r in rates.split(",") if r):
                before = cpu_seconds(signaling.pid)
                achieved, ok, failed, resp, elapsed = run_sipp(
                    scenario, work, sip_port, rate, args.duration, inject, auth=kind == "REGISTER"
                )
                used = cpu_seconds(signaling.pid) - before
                per_op = used / ok * 1e6 if ok else float("nan")
                print(
                    f"{kind:<9}{rate:>10}{achieved:>12.0f}{ok:>8}{failed:>8}{resp:>9.2f}"
                    f"{used / elapsed * 100:>8.0f}{per_op:>11.0f}{(ok / used if used else 0):>15.0f}"
                )
        print("\nA REGISTER op is a whole authenticated registration: two transactions (401, then 200).")
    finally:
        if signaling is not None:
            signaling.send_signal(signal.SIGTERM)
            signaling.communicate(timeout=30)
        nats.stop()


if __name__ == "__main__":
    main()
