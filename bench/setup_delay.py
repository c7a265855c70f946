"""The delay the gateway adds to a browser's call set-up, with many attempts at once.

Starts its own nats-server, media worker and signaling process (as bench/call_rate.py does). This
process plays both ends on one clock, so each figure is the gateway's alone:

- browser agents: SIP over WebSocket like SIP.js (REGISTER with digest; INVITE with Chromium's
  WebRTC offer, its 407 answered), every call asking the media worker for a WebRTC session;
- the carrier: a UDP UAS that answers 100 and 180 at once, 200 after ``--ring-ms``.

For each concurrency (attempts started at the same instant) it prints p50/p99 of
- ``invite->carrier``: the agent's authenticated INVITE sent -> the carrier's INVITE received
  (digest check, dial plan, a media session over NATS, the carrier leg);
- ``with 407``: the same from the agent's first INVITE (the challenge round trip included, as a
  browser lives it);
- ``18x->agent``: the carrier's 180 sent -> the agent's 180 received;
- ``200->agent``: the carrier's 200 sent -> the agent's 200 received (the answer SDP applied on
  the media worker first);
- the CPU signaling and the media worker spent per call (set-up and hang-up), which is what the
  attempts queue behind when they all come at once.

    .venv/bin/python bench/setup_delay.py --concurrency 1,100 --rounds 3

Everything runs on 127.0.0.1 and ends by itself: each round's calls are hung up and every wait is
bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from call_rate import AGENTS, DOMAIN, bench_bus, configure, percentile, start_gateway  # bench/ is on sys.path
from sip_register import cpu_seconds

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Request, Response, parse_message
from tests.support.sdp_samples import CHROMIUM_OFFER

#: The carrier's answer: plain RTP, PCMU (the media worker sends to a port nobody reads).
CARRIER_SDP = (
    "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\na=sendrecv\r\n"
)


@dataclass
class Attempt:
    """One call's timestamps (time.perf_counter, one clock for both ends)."""

    number: str
    first_invite: float = 0.0
    invite: float = 0.0
    carrier_invite: float = 0.0
    carrier_ringing: float = 0.0
    ringing: float = 0.0
    carrier_answer: float = 0.0
    answer: float = 0.0


@dataclass
class Carrier(asyncio.DatagramProtocol):
    """A UAS answering every INVITE with 100 and 180 at once and 200 after ``ring_s``."""

    ring_s: float
    attempts: dict[str, Attempt]
    transport: asyncio.DatagramTransport | None = None
    tag: str = field(default_factory=lambda: secrets.token_hex(4))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not derive from DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.perf_counter()
        message = parse_message(data)
        if not isinstance(message, Request) or message.method == "ACK":
            return
        if message.method != "INVITE":
            self._answer(message, addr, 200, "OK")  # OPTIONS probes, BYE
            return
        attempt = self.attempts.get(str(message.uri).split("@")[0][-6:])
        if attempt is None:
            self._answer(message, addr, 404, "Not Found")
            return
        attempt.carrier_invite = now
        self._answer(message, addr, 100, "Trying")
        attempt.carrier_ringing = time.perf_counter()
        self._answer(message, addr, 180, "Ringing")
        asyncio.get_running_loop().call_later(self.ring_s, self._answered, message, addr, attempt)

    def _answered(self, invite: Request, addr: tuple[str, int], attempt: Attempt) -> None:
        attempt.carrier_answer = time.perf_counter()
        self._answer(invite, addr, 200, "OK", CARRIER_SDP)

    def _answer(
        self, request: Request, addr: tuple[str, int], status: int, reason: str, sdp: str = ""
    ) -> None:
        assert self.transport is not None
        headers = [f"SIP/2.0 {status} {reason}"]
        headers += [f"Via: {via}" for via in request.headers.get_all("Via")]
        to = request.headers.get("To") or ""
        headers += [
            f"From: {request.headers.get('From')}",
            f"To: {to};tag={self.tag}" if status > 100 and ";tag=" not in to else f"To: {to}",
            f"Call-ID: {request.call_id}",
            f"CSeq: {request.cseq.seq} {request.cseq.method}",
            "Contact: <sip:carrier@127.0.0.1>",
        ]
        if sdp:
            headers.append("Content-Type: application/sdp")
        body = sdp.encode()
        text = "\r\n".join(headers) + f"\r\nContent-Length: {len(body)}\r\n\r\n"
        self.transport.sendto(text.encode() + body, addr)


class Agent:
    """A browser's SIP over WebSocket, as SIP.js 0.21 speaks it (RFC 7118)."""

    def __init__(self, user: str, password: str, url: str) -> None:
        self.user, self.password, self.url = user, password, url
        self.host = f"{secrets.token_hex(6)}.invalid"
        self.contact = f"<sip:{secrets.token_hex(4)}@{self.host};transport=ws>"
        self.digest = DigestClient(user, password=password)
        self._responses: dict[tuple[str, int], asyncio.Queue[tuple[float, Response]]] = {}
        self._ws: websockets.ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._ws = await websockets.connect(self.url, subprotocols=[websockets.Subprotocol("sip")])
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            now = time.perf_counter()
            message = parse_message(frame.encode() if isinstance(frame, str) else frame)
            if isinstance(message, Response):
                queue = self._responses.get((message.call_id, message.cseq.seq))
                if queue is not None:
                    queue.put_nowait((now, message))
            elif message.method != "ACK":  # the gateway's BYE or OPTIONS: 200
                await self._send(_response_to(message, 200, "OK"))

    async def _send(self, text: str) -> float:
        assert self._ws is not None
        sent = time.perf_counter()
        await self._ws.send(text)
        return sent

    def _request(
        self,
        method: str,
        uri: str,
        call_id: str,
        cseq: int,
        from_tag: str,
        to: str,
        extra: list[str],
        body: str = "",
    ) -> str:
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/WSS {self.host};branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 70",
            f"To: {to}",
            f"From: <sip:{self.user}@{DOMAIN}>;tag={from_tag}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: {self.contact}",
            "Supported: outbound",
            *extra,
        ]
        if body and not any(line.lower().startswith("content-type:") for line in extra):
            lines.append("Content-Type: application/sdp")  # what an INVITE carries
        return "\r\n".join(lines) + f"\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}"

    async def transact(
        self,
        method: str,
        uri: str,
        call_id: str,
        cseq: int,
        from_tag: str,
        to: str,
        extra: list[str],
        body: str = "",
    ) -> tuple[float, list[tuple[float, Response]]]:
        """Send a request; (when sent, every response up to the final one with its arrival)."""
        queue: asyncio.Queue[tuple[float, Response]] = asyncio.Queue()
        self._responses[(call_id, cseq)] = queue
        sent = await self._send(self._request(method, uri, call_id, cseq, from_tag, to, extra, body))
        responses: list[tuple[float, Response]] = []
        while not responses or responses[-1][1].status_code < 200:
            responses.append(await queue.get())
        del self._responses[(call_id, cseq)]
        return sent, responses

    async def register(self) -> None:
        call_id, tag, aor = secrets.token_hex(8), secrets.token_hex(4), f"<sip:{self.user}@{DOMAIN}>"
        uri = f"sip:{DOMAIN}"
        _, responses = await self.transact("REGISTER", uri, call_id, 1, tag, aor, ["Expires: 600"])
        final = responses[-1][1]
        if final.status_code == 401:
            answer = self.digest.answer(final.headers.get_all("WWW-Authenticate"), "REGISTER", uri)
            _, responses = await self.transact(
                "REGISTER", uri, call_id, 2, tag, aor, ["Expires: 600", f"Authorization: {answer.value}"]
            )
        if responses[-1][1].status_code != 200:
            raise RuntimeError(f"REGISTER {self.user}: {responses[-1][1].status_code}")

    async def call(self, attempt: Attempt) -> None:
        """INVITE (407, ACK, INVITE again), ACK the 200, BYE: the timestamps land in ``attempt``."""
        call_id, tag = secrets.token_hex(10), secrets.token_hex(4)
        uri = f"sip:{attempt.number}@{DOMAIN}"
        to = f"<{uri}>"
        attempt.first_invite, responses = await self.transact(
            "INVITE", uri, call_id, 1, tag, to, [], CHROMIUM_OFFER
        )
        final = responses[-1][1]
        if final.status_code == 407:
            await self._send(self._request("ACK", uri, call_id, 1, tag, final.headers.get("To") or to, []))
            answer = self.digest.answer(final.headers.get_all("Proxy-Authenticate"), "INVITE", uri)
            extra = [f"Proxy-Authorization: {answer.value}"]
            attempt.invite, responses = await self.transact(
                "INVITE", uri, call_id, 2, tag, to, extra, CHROMIUM_OFFER
            )
        else:
            attempt.invite = attempt.first_invite
        for arrived, response in responses:
            if response.status_code == 180 and not attempt.ringing:
                attempt.ringing = arrived
        arrived, final = responses[-1]
        if final.status_code != 200:
            raise RuntimeError(f"INVITE {attempt.number}: {final.status_code} {final.reason}")
        attempt.answer = arrived
        remote = final.headers.get("To") or to
        target = (final.headers.get("Contact") or uri).strip("<>").split(">")[0]
        await self._send(self._request("ACK", target, call_id, 2, tag, remote, []))
        await self.transact("BYE", target, call_id, 3, tag, remote, [])


def _response_to(request: Request, status: int, reason: str) -> str:
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {via}" for via in request.headers.get_all("Via")]
    lines += [
        f"From: {request.headers.get('From')}",
        f"To: {request.headers.get('To')}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq.seq} {request.cseq.method}",
    ]
    return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"


def _ms(values: list[float]) -> str:
    return f"{percentile(values, 0.5) * 1000:>8.2f}{percentile(values, 0.99) * 1000:>8.2f}"


async def measure(
    nats_url: str,
    services: list[subprocess.Popen[str]],
    concurrencies: list[int],
    rounds: int,
    ring_s: float,
    timeout: float,
) -> None:
    """Run every concurrency; the service processes started go into ``services`` (the caller stops them)."""
    attempts: dict[str, Attempt] = {}
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Carrier(ring_s, attempts), local_addr=("127.0.0.1", 0)
    )
    carrier_port = transport.get_extra_info("sockname")[1]
    await configure(nats_url, carrier_port)
    media, signaling, env = await asyncio.to_thread(start_gateway, nats_url)
    services += [media, signaling]
    ws_url = f"ws://127.0.0.1:{env['ECHODESK_SIGNALING_SIP_WS_PORT']}/ws"
    agents = [Agent(str(100 + n), f"pw{n}", ws_url) for n in range(AGENTS)]
    try:
        for agent in agents:
            await agent.connect()
        await asyncio.gather(*(agent.register() for agent in agents))
        print(f"{AGENTS} agents registered over WebSocket; the carrier rings {ring_s * 1000:.0f} ms\n")
        print(
            f"{'attempts':>9}{'calls':>7}{'failed':>7}  {'invite->carrier':>16}  {'with 407':>16}"
            f"  {'18x->agent':>16}  {'200->agent':>16}   (ms, p50 p99)"
            f"{'sig ms/call':>13}{'media ms/call':>15}"
        )
        serial = 0
        for concurrency in concurrencies:
            done: list[Attempt] = []
            failed = 0
            cpu_before = [cpu_seconds(signaling.pid), cpu_seconds(media.pid)]
            for _ in range(rounds):
                batch = []
                for index in range(concurrency):
                    serial += 1
                    attempt = Attempt(number=f"555{serial:06d}")
                    attempts[attempt.number[-6:]] = attempt
                    batch.append((agents[index % AGENTS], attempt))
                async with asyncio.timeout(timeout):
                    outcomes = await asyncio.gather(
                        *(agent.call(attempt) for agent, attempt in batch), return_exceptions=True
                    )
                for (_, attempt), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        failed += 1
                        print(f"  failed: {outcome!r}")
                    else:
                        done.append(attempt)
            print(
                f"{concurrency:>9}{len(done):>7}{failed:>7}"
                f"  {_ms([a.carrier_invite - a.invite for a in done])}"
                f"  {_ms([a.carrier_invite - a.first_invite for a in done])}"
                f"  {_ms([a.ringing - a.carrier_ringing for a in done])}"
                f"  {_ms([a.answer - a.carrier_answer for a in done])}"
                + "".join(
                    f"{(cpu_seconds(pid) - before) * 1000 / max(1, len(done)):>{width}.2f}"
                    for pid, before, width in zip(
                        (signaling.pid, media.pid), cpu_before, (13, 15), strict=True
                    )
                )
            )
    finally:
        for agent in agents:
            await agent.close()
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,100", help="attempts started at once, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="batches per concurrency")
    parser.add_argument("--ring-ms", type=int, default=200, help="how long the carrier rings")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on one batch (s)")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",") if c]

    with bench_bus() as (_, nats, services):
        asyncio.run(
            measure(nats.url, services, concurrencies, args.rounds, args.ring_ms / 1000, args.timeout)
        )


if __name__ == "__main__":
    main()
