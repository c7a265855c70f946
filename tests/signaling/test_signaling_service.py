"""The signaling service as a process, on a real nats-server: digest-authenticated registration
over UDP and TCP, presence events, OPTIONS, and bad input that disturbs nobody else."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import pytest

from shared import subjects
from shared.bus import Bus
from shared.events import AgentPresence, PresenceState, parse_event
from shared.records import agent_key, agent_record
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sip_client import SipClient

DOMAIN = "acme.test"


@dataclass
class Signaling:
    bus: Bus
    env: dict[str, str]
    process: subprocess.Popen[str]

    def address(self, transport: str) -> tuple[str, int]:
        return ("127.0.0.1", int(self.env[f"ECHODESK_SIGNALING_SIP_{transport.upper()}_PORT"]))

    def client(self, transport: str = "udp", local_ip: str = "127.0.0.1", timeout: float = 3.0) -> SipClient:
        return SipClient(self.address(transport), transport, timeout=timeout, local_ip=local_ip)

    async def put_agent(self, user: str, password: str, agent_id: str | None = None) -> None:
        record = agent_record(
            tenant_id="acme",
            agent_id=agent_id or f"agent-{user}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=password,
        )
        kv = await self.bus.bucket(subjects.AGENTS_KV)
        await kv.put(agent_key(DOMAIN, user), record.model_dump_json().encode())

    async def delete_agent(self, user: str) -> None:
        kv = await self.bus.bucket(subjects.AGENTS_KV)
        await kv.delete(agent_key(DOMAIN, user))


@pytest.fixture
async def signaling(nats_server: NatsServer) -> AsyncIterator[Signaling]:
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    env = {**free_ports_env("signaling"), "ECHODESK_NATS_URL": nats_server.url, "ECHODESK_LOG_JSON": "true"}
    stack = Signaling(bus, env, None)  # type: ignore[arg-type]
    await stack.put_agent("100", "secret-100")
    await stack.put_agent("101", "secret-101")
    stack.process = await asyncio.to_thread(start_service, "signaling", env)
    try:
        yield stack
    finally:
        stack.process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(stack.process.communicate, None, 30)
        await bus.close()
        assert stack.process.returncode == 0, output
        assert "Traceback" not in output, output


async def presence_events(bus: Bus, count: int, timeout: float = 10.0) -> list[AgentPresence]:
    sub = await bus.js.pull_subscribe(subjects.agent_events(), stream=subjects.AGENT_EVENTS.name)
    found: list[AgentPresence] = []
    async with asyncio.timeout(timeout):
        while len(found) < count:
            try:
                for msg in await sub.fetch(count - len(found), timeout=0.5):
                    event = parse_event(msg.data)
                    assert isinstance(event, AgentPresence)
                    found.append(event)
            except nats.errors.TimeoutError:
                continue
    return found


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_digest_registration_and_presence(signaling: Signaling, transport: str) -> None:
    client = signaling.client(transport)
    challenge = await asyncio.to_thread(client.register, "100", DOMAIN, None)
    assert challenge.status_code == 401
    algorithms = {
        v.split("algorithm=")[1].split(",")[0] for v in challenge.headers.get_all("WWW-Authenticate")
    }
    assert algorithms == {"SHA-256", "MD5"}
    ok = await asyncio.to_thread(client.register, "100", DOMAIN, "secret-100", expires=120)
    assert ok.status_code == 200
    [contact] = ok.headers.get_all("Contact")
    assert contact.endswith(";expires=120")
    assert f"rport={client.port}" in (ok.headers.get("Via") or "")
    gone = await asyncio.to_thread(client.register, "100", DOMAIN, "secret-100", expires=0)
    assert gone.status_code == 200
    assert gone.headers.get_all("Contact") == []
    registered, unregistered = await presence_events(signaling.bus, 2)
    assert (registered.agent_id, registered.data.state, registered.data.contacts) == (
        "agent-100",
        PresenceState.REGISTERED,
        1,
    )
    assert registered.data.transport == transport
    assert registered.data.user_agent == "test-ua"
    assert (unregistered.data.state, unregistered.data.contacts) == (PresenceState.UNREGISTERED, 0)
    client.close()


async def test_wrong_password_never_succeeds(signaling: Signaling) -> None:
    client = signaling.client()
    for attempt in ("secret-101", "Secret-100", "", "secret-100 "):
        response = await asyncio.to_thread(client.register, "100", DOMAIN, attempt)
        assert response.status_code in (401, 403), attempt
    # Someone else's valid credentials do not bind this address either (RFC 3261 10.3 step 3).
    other = await asyncio.to_thread(client.register, "101", DOMAIN, "secret-101")
    assert other.status_code == 200
    client.close()


async def test_options_is_answered_for_health_checks(signaling: Signaling) -> None:
    client = signaling.client()
    response = await asyncio.to_thread(
        client.request,
        "OPTIONS",
        f"sip:{DOMAIN}",
        [
            "From: <sip:monitor@example.test>;tag=1",
            f"To: <sip:{DOMAIN}>",
            "Call-ID: opt-1",
            "CSeq: 1 OPTIONS",
        ],
    )
    assert response.status_code == 200
    assert "REGISTER" in (response.headers.get("Allow") or "")
    client.close()


async def test_malformed_request_gets_400_naming_the_fault(signaling: Signaling) -> None:
    client = signaling.client()
    client.send(
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bKbad;rport\r\n"
        "From: <sip:100@acme.test>;tag=1\r\nTo: <sip:100@acme.test>\r\nCall-ID: x\r\nCSeq: one REGISTER\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n".encode()
    )
    # The answer copies the broken CSeq (RFC 3261 8.2.6.2), so read its status line as bytes.
    raw = await asyncio.to_thread(client.sock.recv, 65535)
    assert raw.startswith(b"SIP/2.0 400 Bad CSeq header\r\n")
    client.close()


async def test_garbage_and_half_messages_disturb_nobody(signaling: Signaling) -> None:
    # 64 kB of junk by UDP (the largest datagram there is) and 100 kB down a TCP connection.
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk.sendto(os.urandom(65000), signaling.address("udp"))
    junk.close()
    flood = socket.create_connection(signaling.address("tcp"))
    flood.sendall(b"INVITE sip:x SIP/2.0\r\n" + b"X-Junk: " + b"a" * 100_000)
    # A message cut off halfway, its connection left open.
    half = socket.create_connection(signaling.address("tcp"))
    half.sendall(
        b"REGISTER sip:acme.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKh\r\nContent-Le"
    )
    # Everyone else goes on as if nothing happened.
    for transport in ("udp", "tcp"):
        client = signaling.client(transport)
        ok = await asyncio.to_thread(client.register, "101", DOMAIN, "secret-101")
        assert ok.status_code == 200, transport
        client.close()
    # The flooded connection was refused and closed: it answers 513 or just ends.
    flood.settimeout(5)
    received = b""
    try:
        while chunk := flood.recv(65535):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    assert received == b"" or received.startswith(b"SIP/2.0 513")
    flood.close()
    half.close()


async def test_agent_changes_apply_without_a_restart(signaling: Signaling) -> None:
    client = signaling.client()
    assert (await asyncio.to_thread(client.register, "102", DOMAIN, "pw-102")).status_code == 401
    await signaling.put_agent("102", "pw-102")
    async with asyncio.timeout(5):
        while (await asyncio.to_thread(client.register, "102", DOMAIN, "pw-102")).status_code != 200:
            await asyncio.sleep(0.1)
    await signaling.delete_agent("102")
    registered, unregistered = await presence_events(signaling.bus, 2)
    assert registered.data.state is PresenceState.REGISTERED
    assert unregistered.data.state is PresenceState.UNREGISTERED
    assert (await asyncio.to_thread(client.register, "102", DOMAIN, "pw-102")).status_code == 401
    client.close()


async def test_scanner_is_dropped_and_banned_without_disturbing_an_agent(signaling: Signaling) -> None:
    scanner = signaling.client(local_ip="127.0.0.66", timeout=1.0)
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(scanner.register, "100", DOMAIN, None, user_agent="friendly-scanner")
    # Banned now: even an innocent-looking request from that address gets silence.
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(scanner.register, "100", DOMAIN, None, user_agent="Zoiper")
    agent = signaling.client(local_ip="127.0.0.7")
    assert (await asyncio.to_thread(agent.register, "100", DOMAIN, "secret-100")).status_code == 200
    scanner.close()
    agent.close()


async def test_password_guessing_gets_the_source_banned(signaling: Signaling) -> None:
    guesser = signaling.client(local_ip="127.0.0.99", timeout=1.0)
    answers = [
        (await asyncio.to_thread(guesser.register, "100", DOMAIN, f"guess-{n}")).status_code for n in range(5)
    ]
    assert answers == [401, 401, 401, 401, 403]
    with pytest.raises(TimeoutError):  # banned: not even a challenge any more
        await asyncio.to_thread(guesser.register, "100", DOMAIN, "secret-100")
    agent = signaling.client(local_ip="127.0.0.8")
    assert (await asyncio.to_thread(agent.register, "100", DOMAIN, "secret-100")).status_code == 200
    guesser.close()
    agent.close()


async def test_crlf_keepalive_gets_a_pong(signaling: Signaling) -> None:
    # RFC 5626 3.5.1: a double-CRLF ping on a connection is answered with a single CRLF.
    with socket.create_connection(signaling.address("tcp"), timeout=3) as sock:
        sock.sendall(b"\r\n\r\n")
        assert await asyncio.to_thread(sock.recv, 16) == b"\r\n"
