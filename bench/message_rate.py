"""Text messages per second through signaling to registered agents, none lost.

Starts its own nats-server, media worker (idle here) and signaling process, as bench/call_rate.py
does, and registers 50 browser agents over SIP over WebSocket (bench/setup_delay.py's agent). Half
of them send MESSAGEs (RFC 3428) to the other half as SIP.js's ``Messager`` does: each one is
challenged (407) and sent again with the agent's digest; the gateway delivers it to the
recipient's registration, which answers 200. This process also reads the ``message.delivered``
events from NATS, so for each offered rate it prints

- how many were sent, answered 200, received by their recipient, and reported delivered, and how
  many of them were lost (no 200, not received exactly once, or no delivered event);
- p50/p99 of ``send->200`` (the authenticated MESSAGE sent -> the sender's 200: auth, dial plan,
  the delivery to the recipient and its 200) and ``send->delivered event`` (the same MESSAGE ->
  its ``message.delivered`` event arriving from NATS);
- signaling's CPU per message.

    .venv/bin/python bench/message_rate.py --rates 100,200,400 --duration 5

``--py-spy DIR`` also samples signaling during each rate (``signaling-<rate>.txt``, collapsed
stacks, as bench/call_rate.py writes them).

Everything runs on 127.0.0.1 and ends by itself (every wait is bounded by ``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from call_rate import (  # bench/ is on sys.path
    AGENTS,
    DOMAIN,
    bench_bus,
    configure,
    percentile,
    sample,
    start_gateway,
)
from setup_delay import Agent
from sip_register import cpu_seconds

from services.signaling.sip.message import Request, parse_message
from shared import subjects
from shared.bus import Bus

SENDERS = AGENTS // 2
#: Georgian, as the helpdesk's customers write (three bytes a letter).
TEXT = "გამარჯობა, როგორ შემიძლია დაგეხმაროთ?"


@dataclass
class Sent:
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0
    received: int = 0
    delivered_event: float = 0.0


class Recipient(Agent):
    """An agent that records each MESSAGE it gets (and answers 200, as SIP.js does)."""

    def __init__(self, user: str, password: str, url: str, book: dict[str, Sent]) -> None:
        super().__init__(user, password, url)
        self.book = book

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            message = parse_message(frame.encode() if isinstance(frame, str) else frame)
            if isinstance(message, Request) and message.method == "MESSAGE":
                token = message.body.decode().rsplit(" ", 1)[-1]
                entry = self.book.get(token)
                if entry is not None:
                    entry.received += 1
                await self._ws.send(_ok(message))
            elif isinstance(message, Request):
                await self._ws.send(_ok(message))
            else:
                queue = self._responses.get((message.call_id, message.cseq.seq))
                if queue is not None:
                    queue.put_nowait((time.perf_counter(), message))


def _ok(request: Request) -> str:
    lines = [
        "SIP/2.0 200 OK",
        *(f"Via: {v}" for v in request.headers.get_all("Via")),
        f"From: {request.headers.get('From')}",
        f"To: {request.headers.get('To')};tag={secrets.token_hex(4)}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.headers.get('CSeq')}",
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


async def send_message(agent: Agent, target: str, text: str, entry: Sent) -> None:
    """MESSAGE (407) MESSAGE with the digest, as SIP.js's Messager: the timestamps land in ``entry``."""
    call_id, tag = secrets.token_hex(10), secrets.token_hex(4)
    uri = f"sip:{target}@{DOMAIN}"
    extra = ["Content-Type: text/plain;charset=UTF-8"]
    _, responses = await agent.transact("MESSAGE", uri, call_id, 1, tag, f"<{uri}>", extra, text)
    final = responses[-1][1]
    if final.status_code == 407:
        answer = agent.digest.answer(final.headers.get_all("Proxy-Authenticate"), "MESSAGE", uri)
        entry.sent, responses = await agent.transact(
            "MESSAGE",
            uri,
            call_id,
            2,
            tag,
            f"<{uri}>",
            [*extra, f"Proxy-Authorization: {answer.value}"],
            text,
        )
    entry.answered, final = responses[-1]
    entry.status = final.status_code


def _ms(values: list[float]) -> str:
    return f"{percentile(values, 0.5) * 1000:7.2f} {percentile(values, 0.99) * 1000:7.2f}"


async def measure(
    nats_url: str,
    services: list[subprocess.Popen[str]],
    rates: list[int],
    duration: float,
    timeout: float,
    spy: Path | None = None,
) -> None:
    await configure(nats_url, 9)  # the trunk is never used: messages stay between agents
    media, signaling, env = await asyncio.to_thread(start_gateway, nats_url)
    services += [media, signaling]
    ws_url = f"ws://127.0.0.1:{env['ECHODESK_SIGNALING_SIP_WS_PORT']}/ws"
    book: dict[str, Sent] = {}
    by_message_id: dict[str, str] = {}
    reported = asyncio.Event()
    senders = [Agent(str(100 + n), f"pw{n}", ws_url) for n in range(SENDERS)]
    recipients = [Recipient(str(100 + n), f"pw{n}", ws_url, book) for n in range(SENDERS, AGENTS)]
    bus = await Bus.connect(nats_url, name="bench-events", timeout=10)

    async def on_event(msg: object) -> None:
        arrived = time.perf_counter()
        event = json.loads(msg.data)  # type: ignore[attr-defined]
        if event["type"] == "message.sent":
            by_message_id[event["message_id"]] = event["data"]["text"].rsplit(" ", 1)[-1]
        elif event["type"] == "message.delivered":
            entry = book.get(by_message_id.get(event["message_id"], ""))
            if entry is not None:
                entry.delivered_event = arrived
                reported.set()

    # The events of one message come in order on one subject; a core subscription sees them as
    # JetStream stores them.
    subscription = await bus.nc.subscribe(subjects.message_events(), cb=on_event)
    try:
        for agent in (*senders, *recipients):
            await agent.connect()
        await asyncio.gather(*(agent.register() for agent in (*senders, *recipients)))
        print(
            f"{SENDERS} agents send to {AGENTS - SENDERS} others over WebSocket, each message 407 then sent\n"
        )
        print(
            f"{'offered/s':>10}{'achieved/s':>11}{'sent':>7}{'200':>7}{'recv':>7}{'events':>7}{'lost':>6}"
            f"  {'send->200':>15}  {'send->delivered':>15}  {'CPU/msg':>9}   (ms, p50 p99)"
        )
        serial = 0
        for rate in rates:
            count = int(rate * duration)
            entries: list[Sent] = []
            tasks = []
            cpu_before = cpu_seconds(signaling.pid)
            samplers = sample(spy, rate, {"signaling": signaling.pid})
            started = time.perf_counter()
            for index in range(count):
                serial += 1
                token = f"m{serial}"
                entry = book[token] = Sent()
                entries.append(entry)
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sender = senders[index % SENDERS]
                target = str(100 + SENDERS + index % (AGENTS - SENDERS))
                tasks.append(asyncio.create_task(send_message(sender, target, f"{TEXT} {token}", entry)))
            async with asyncio.timeout(timeout):
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            # A delivered event may still be on its way; a lost one never comes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    while any(e.status == 200 and not e.delivered_event for e in entries):
                        await reported.wait()
                        reported.clear()
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(signaling.pid) - cpu_before
            for sampler in samplers:
                sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                sampler.wait(30)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    print(f"  failed: {outcome!r}")
            answered = [e for e in entries if e.status == 200]
            received = [e for e in entries if e.received == 1]
            reports = [e for e in entries if e.delivered_event]
            lost = sum(1 for e in entries if e.status != 200 or e.received != 1 or not e.delivered_event)
            print(
                f"{rate:>10}{len(answered) / elapsed:>11.0f}{count:>7}{len(answered):>7}{len(received):>7}"
                f"{len(reports):>7}{lost:>6}"
                f"  {_ms([e.answered - e.sent for e in answered])}"
                f"  {_ms([e.delivered_event - e.sent for e in reports])}"
                f"  {cpu / max(1, count) * 1e6:>7.0f}us"
            )
    finally:
        await subscription.unsubscribe()
        await bus.close()
        for agent in (*senders, *recipients):
            await agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,200,400", help="messages per second offered, comma-separated")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds each rate is offered")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on one rate's run (s)")
    parser.add_argument("--py-spy", type=Path, default=None, help="write signaling's py-spy samples here")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    with bench_bus() as (_, nats, services):
        asyncio.run(measure(nats.url, services, rates, args.duration, args.timeout, args.py_spy))


if __name__ == "__main__":
    main()
