"""CPU per SIP operation through the signaling stack, in process: the path the sipp bench measures,
without sipp, the bus or the kernel's scheduling in the figures.

Starts a real ``SipStack`` on free 127.0.0.1 ports (uvloop, as the service runs), fills its
``AgentDirectory``, and feeds pre-encoded datagrams through ``transport.inbound.deliver``, the one
function every UDP datagram goes through. Responses leave on the stack's real UDP socket towards a
socket of ours, where the 401 is read and answered with ``DigestClient`` outside the timed part.

    .venv/bin/python bench/sip_stack_path.py [--registrations 4000] [--options 8000] [--profile 25]

Prints, per operation, the p50/p99/mean cost in microseconds and operations per CPU-second; a
REGISTER operation is a whole authenticated registration (REGISTER -> 401, REGISTER with digest ->
200), so it is the sum of two timed ``deliver`` calls. ``--profile N`` repeats the run under
cProfile and prints its top N functions by own time. Loopback only; it ends by itself.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.signaling.directory import AgentDirectory
from services.signaling.sip.auth import DigestClient
from services.signaling.sip.limits import ParseLimits
from services.signaling.sip.message import Response, parse_message
from services.signaling.stack import SipStack
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.transport.inbound import deliver
from shared.records import agent_key, agent_record
from shared.settings import SignalingSettings
from shared.supervisor import free_port

DOMAIN = "bench.test"
AGENTS = 2000


def register_bytes(user: str, client: tuple[str, int], n: int, call_id: str, cseq: int, auth: str) -> bytes:
    """A REGISTER as sipp's register_bench_uac.xml sends it."""
    host, port = client
    authorization = f"Authorization: {auth}\r\n" if auth else ""
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{n}-{cseq}-{uuid.uuid4().hex[:8]};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{DOMAIN}>;tag={n}SIPpTag00{n}\r\n"
        f"To: <sip:{user}@{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{host}:{port};transport=UDP>\r\n"
        "Expires: 3600\r\n"
        f"{authorization}"
        "User-Agent: sipp register_bench_uac\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def options_bytes(server: tuple[str, int], client: tuple[str, int], n: int) -> bytes:
    """An OPTIONS ping as sipp's options_uac.xml sends it."""
    host, port = client
    return (
        f"OPTIONS sip:{server[0]}:{server[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-opt-{n}-{uuid.uuid4().hex[:8]};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:ping@{host}:{port}>;tag={n}SIPpTag00{n}\r\n"
        f"To: <sip:{server[0]}:{server[1]}>\r\n"
        f"Call-ID: {n}-opt-{uuid.uuid4().hex}@{host}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Contact: <sip:ping@127.0.0.1>\r\n"
        "Accept: application/sdp\r\n"
        "User-Agent: sipp options_uac\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def settings() -> SignalingSettings:
    return SignalingSettings(
        sip_host="127.0.0.1",
        sip_udp_port=free_port(),
        sip_tcp_port=free_port(),
        sip_ws_port=free_port(),
        sip_trusted_networks="127.0.0.0/8",
        sip_digest_algorithms="MD5",
        sip_max_expires=3600,
    )


def directory() -> AgentDirectory:
    agents = AgentDirectory()
    for n in range(AGENTS):
        user = str(10000 + n)
        record = agent_record(
            tenant_id="bench",
            agent_id=f"a{n}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=f"pw{n}",
        )
        agents.apply(agent_key(DOMAIN, user), record.model_dump_json().encode())
    return agents


class Harness:
    def __init__(self, stack: SipStack, sock: socket.socket, limits: ParseLimits) -> None:
        self.stack = stack
        self.sock = sock
        self.limits = limits
        self.client: tuple[str, int] = sock.getsockname()
        server = stack.settings.sip_udp_port
        self.server = ("127.0.0.1", server)
        self.flow = Flow(TransportKind.UDP, self.client, self.server)
        self.broken: list[bytes] = []
        self.profiler: cProfile.Profile | None = None

    def deliver(self, data: bytes) -> int:
        """ns spent in ``deliver`` for ``data`` (profiled alone, not the client side around it)."""
        profiler = self.profiler
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter_ns()
        deliver(data, self.flow, self.stack, self.limits, self.broken.append)
        spent = time.perf_counter_ns() - start
        if profiler is not None:
            profiler.disable()
        return spent

    def answer(self) -> Response:
        data = self.sock.recv(65535)
        message = parse_message(data)
        if not isinstance(message, Response):
            raise SystemExit(f"expected a response, got {data[:60]!r}")
        return message

    def register(self, n: int) -> int:
        user = str(10000 + n % AGENTS)
        call_id = f"{n}-reg-{uuid.uuid4().hex}@127.0.0.1"
        spent = self.deliver(register_bytes(user, self.client, n, call_id, 1, ""))
        challenge = self.answer()
        if challenge.status_code != 401:
            raise SystemExit(f"REGISTER got {challenge.status_code}, not 401")
        client = DigestClient(user, password=f"pw{n % AGENTS}")
        credentials = client.answer(
            challenge.headers.get_all("WWW-Authenticate"), "REGISTER", f"sip:{DOMAIN}"
        ).value
        spent += self.deliver(register_bytes(user, self.client, n, call_id, 2, credentials))
        ok = self.answer()
        if ok.status_code != 200:
            raise SystemExit(f"authenticated REGISTER got {ok.status_code} {ok.reason}")
        return spent

    def options(self, packets: list[bytes]) -> list[int]:
        spent = []
        for data in packets:
            spent.append(self.deliver(data))
            if self.answer().status_code != 200:
                raise SystemExit("OPTIONS not answered 200")
        return spent


class Collections:
    """A gc callback adding up the time spent in cyclic collections, per generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.counts = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.counts[info["generation"]] += 1


def report(kind: str, spent_ns: list[int]) -> None:
    us = sorted(t / 1000 for t in spent_ns)
    p50 = statistics.median(us)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    mean = statistics.fmean(us)
    print(f"{kind:<9}{len(us):>8}{p50:>10.1f}{p99:>10.1f}{mean:>10.1f}{1e6 / mean:>14.0f}")


async def run(args: argparse.Namespace) -> None:
    stack = SipStack(settings(), directory(), lambda event: None)
    await stack.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    try:
        harness = Harness(stack, sock, ParseLimits(max_message_bytes=stack.settings.sip_max_message_bytes))
        # Warm-up: every agent registered once, caches and code paths as in a running service.
        for n in range(min(AGENTS, args.registrations)):
            harness.register(n)
        options = [options_bytes(harness.server, harness.client, n) for n in range(args.options)]
        harness.options(options[: min(500, len(options))])
        options = [options_bytes(harness.server, harness.client, n) for n in range(args.options)]
        gc.collect()
        profiler = harness.profiler = cProfile.Profile() if args.profile else None
        collector = Collections()
        gc.callbacks.append(collector)
        try:
            registers = [harness.register(AGENTS + n) for n in range(args.registrations)]
            pings = harness.options(options)
        finally:
            gc.callbacks.remove(collector)
        print(f"{'kind':<9}{'ops':>8}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}{'ops per cpu-s':>14}")
        report("REGISTER", registers)
        report("OPTIONS", pings)
        print("\nA REGISTER op is a whole authenticated registration: two transactions (401, then 200).")
        timed = (sum(registers) + sum(pings)) / 1e9
        print(
            f"cyclic GC: {collector.seconds * 1e3:.0f} ms of {timed * 1e3:.0f} ms in deliver (and the client "
            f"between), collections per generation {collector.counts}, live server transactions "
            f"{len(stack.transactions)}"
        )
        if harness.broken:
            raise SystemExit(f"{len(harness.broken)} messages were answered as malformed")
        if profiler is not None:
            print(f"\ncProfile of deliver() (inflated by the profiler), top {args.profile} by {args.sort}:")
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.profile)
    finally:
        sock.close()
        await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--registrations", type=int, default=4000, help="timed authenticated registrations")
    parser.add_argument("--options", type=int, default=8000, help="timed OPTIONS transactions")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N")
    parser.add_argument("--sort", default="tottime", help="cProfile order: tottime, cumulative ...")
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
