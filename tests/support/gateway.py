"""The whole gateway for end-to-end call tests: a real media worker and signaling process on a test's
nats-server, agent 100 of ``acme.test`` in the directory, and sipp playing the carrier (a default
trunk on loopback) that answers every call and echoes its RTP::

    async with gateway_stack(nats_server, tmp_path) as (gateway, carrier):
        ...  # call gateway.sip (UDP) or gateway.ws_url (SIP over WebSocket) as agent 100
        result = await carrier.wait_async(timeout=20)
        events = await call_events(gateway.bus)

Everything listens on 127.0.0.1 and advertises 127.0.0.1; every port is a free one.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nats.errors

from shared import subjects
from shared.bus import Bus
from shared.events import CallEventEnvelope, parse_event
from shared.records import TrunkRecord, agent_key, agent_record, trunk_key
from shared.supervisor import free_port
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sipp import Sipp, require_sipp

if TYPE_CHECKING:  # the browser tests' agent; the others need no Playwright
    from tests.support.browser import BrowserAgent

DOMAIN = "acme.test"
AGENT_USER = "100"
AGENT_PASSWORD = "pw-100"


@dataclass
class Gateway:
    bus: Bus
    #: The signaling service's SIP over UDP address.
    sip: tuple[str, int]
    #: The signaling service's SIP over WebSocket URL (ws://, no TLS).
    ws_url: str
    media_env: dict[str, str]
    signaling_env: dict[str, str]
    media: subprocess.Popen[str]
    signaling: subprocess.Popen[str]
    #: Set by a test that kills the media worker on purpose (it is then not expected to exit cleanly).
    media_killed: bool = False
    #: Signaling processes a test killed (SIGKILL) and replaced: reaped at the end, not checked.
    killed_signaling: list[subprocess.Popen[str]] = field(default_factory=list)

    def kill_media(self) -> None:
        self.media_killed = True
        self.media.kill()

    def kill_signaling(self) -> None:
        """SIGKILL the signaling process, as a crash or an OOM kill would."""
        self.signaling.kill()
        self.killed_signaling.append(self.signaling)

    async def stop_signaling(self) -> None:
        """SIGTERM the signaling process, as a rollout or ``echodesk run`` stopping does; it must
        exit cleanly."""
        self.signaling.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(self.signaling.communicate, None, 60)
        assert self.signaling.returncode == 0, output
        assert "Traceback" not in output, output

    async def start_signaling(self) -> float:
        """A new signaling process with the same instance id, ports and settings, as the supervisor
        (or Kubernetes) starts one; returns the seconds until it was ready."""
        started = time.monotonic()
        self.signaling = await asyncio.to_thread(start_service, "signaling", self.signaling_env)
        return time.monotonic() - started


@asynccontextmanager
async def gateway_stack(
    nats_server: NatsServer,
    tmp_path: Path,
    *,
    carrier_calls: int = 2,
    signaling_settings: dict[str, str] | None = None,
    carrier_scenario: str | Path = "carrier_answer_uas",
    carrier_keys: dict[str, str] | None = None,
    recorder: bool = False,
    carrier_timeout_s: float = 60.0,
    media_settings: dict[str, str] | None = None,
) -> AsyncIterator[tuple[Gateway, Sipp]]:
    """Carrier, directory, media worker and signaling up; stopped (and checked clean) on exit.

    ``carrier_calls`` counts sipp calls: the trunk's first OPTIONS probe is one, then each call.
    ``signaling_settings`` adds ``ECHODESK_SIGNALING_*`` variables (sipp agents need MD5 digests).
    ``carrier_scenario`` and ``carrier_keys`` choose how sipp plays the carrier (its -key values).
    ``recorder`` starts a recorder too, writing under ``tmp_path/recordings``.
    ``carrier_timeout_s`` bounds the carrier's whole run (half of it any one wait, at least 30 s).
    ``media_settings`` adds ``ECHODESK_MEDIA_*`` variables (quality reports are off unless set here).
    """
    require_sipp()
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    media_port = free_port()
    carrier = Sipp(
        carrier_scenario,
        tmp_path,
        calls=carrier_calls,
        timeout=carrier_timeout_s,
        recv_timeout=max(30.0, carrier_timeout_s / 2),
        keys=carrier_keys or {},
        extra_args=("-rtp_echo", "-mp", str(media_port), "-mi", "127.0.0.1"),
    )
    await carrier.start_async()
    agents = await bus.bucket(subjects.AGENTS_KV)
    record = agent_record(
        tenant_id="acme",
        agent_id="a100",
        extension="100",
        sip_username=AGENT_USER,
        domain=DOMAIN,
        password=AGENT_PASSWORD,
    )
    await agents.put(agent_key(DOMAIN, AGENT_USER), record.model_dump_json().encode())
    trunks = await bus.bucket(subjects.TRUNKS_KV)
    trunk = TrunkRecord(
        tenant_id="acme",
        trunk_id="geo",
        name="Geo",
        sip_server="127.0.0.1",
        sip_port=carrier.port,
        registers=False,
        is_default=True,
        keepalive_s=3600,
    )
    await trunks.put(trunk_key("acme", "geo"), trunk.model_dump_json().encode())
    base = {"ECHODESK_NATS_URL": nats_server.url, "ECHODESK_LOG_JSON": "true"}
    rtp_low = free_port() & ~1
    media_env = {
        **base,
        **free_ports_env("media"),
        "ECHODESK_MEDIA_BIND_ADDRESS": "127.0.0.1",
        "ECHODESK_MEDIA_PUBLIC_ADDRESS": "127.0.0.1",
        "ECHODESK_MEDIA_RTP_PORT_MIN": str(rtp_low),
        "ECHODESK_MEDIA_RTP_PORT_MAX": str(rtp_low + 40),
        "ECHODESK_INSTANCE_ID": "worker-1",
        # Tests list a call's events exactly: the periodic call.quality only where a test asks.
        "ECHODESK_MEDIA_QUALITY_INTERVAL_S": "0",
        **(media_settings or {}),
    }
    signaling_env = {
        **base,
        **free_ports_env("signaling"),
        "ECHODESK_SIGNALING_SIP_HOST": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_PUBLIC_HOST": "127.0.0.1",
        **(signaling_settings or {}),
    }
    recorder_env = {
        **base,
        **free_ports_env("recorder"),
        "ECHODESK_RECORDER_RECORDINGS_DIR": str(tmp_path / "recordings"),
        "ECHODESK_INSTANCE_ID": "recorder-1",
    }
    media = None
    started: list[subprocess.Popen[str]] = []
    try:
        media = await asyncio.to_thread(start_service, "media", media_env)
        started.append(media)
        if recorder:
            started.append(await asyncio.to_thread(start_service, "recorder", recorder_env))
        signaling = await asyncio.to_thread(start_service, "signaling", signaling_env)
    except BaseException:
        for process in started:
            process.kill()
            await asyncio.to_thread(process.communicate, None, 30)
        await carrier.stop_async()
        await bus.close()
        raise
    gateway = Gateway(
        bus=bus,
        sip=("127.0.0.1", int(signaling_env["ECHODESK_SIGNALING_SIP_UDP_PORT"])),
        ws_url=f"ws://127.0.0.1:{signaling_env['ECHODESK_SIGNALING_SIP_WS_PORT']}/ws",
        media_env=media_env,
        signaling_env=signaling_env,
        media=media,
        signaling=signaling,
    )
    try:
        yield gateway, carrier
    finally:
        outputs = []
        for process in gateway.killed_signaling:
            await asyncio.to_thread(process.communicate, None, 10)
        for process in (gateway.signaling, *started):
            if process is media and gateway.media_killed:
                await asyncio.to_thread(process.communicate, None, 10)
                continue
            process.send_signal(signal.SIGTERM)
            try:
                output, _ = await asyncio.to_thread(process.communicate, None, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = await asyncio.to_thread(process.communicate, None, 10)
                output = f"did not stop within 30 s of SIGTERM\n{output}"
            outputs.append(output)
            assert process.returncode == 0, output
        if carrier.result is None:
            await carrier.stop_async()
        await bus.close()
        for output in outputs:
            assert "Traceback" not in output, output


async def register_browser(
    agent: BrowserAgent, gateway: Gateway, user: str = AGENT_USER, password: str = AGENT_PASSWORD
) -> None:
    """Register a browser page as ``user`` over the gateway's WebSocket, with an RFC 5626 instance
    as our softphone registers (a reconnected page is the same agent)."""
    registration = await agent.register(
        server=gateway.ws_url,
        aor=f"sip:{user}@{DOMAIN}",
        user=user,
        password=password,
        instance_id=str(uuid.uuid4()),
        reg_id=1,
    )
    assert registration.state == "Registered", registration


async def add_agent(bus: Bus, user: str, password: str, *, ring_groups: tuple[str, ...] = ()) -> None:
    """Another agent of tenant ``acme`` (agent id ``a<user>``, extension ``user``)."""
    record = agent_record(
        tenant_id="acme",
        agent_id=f"a{user}",
        extension=user,
        sip_username=user,
        domain=DOMAIN,
        password=password,
        ring_groups=ring_groups,
    )
    await (await bus.bucket(subjects.AGENTS_KV)).put(
        agent_key(DOMAIN, user), record.model_dump_json().encode()
    )


async def add_inbound_trunk(bus: Bus, dids: tuple[str, ...], *, ring_group: str | None = None) -> int:
    """A trunk whose carrier (sipp started with ``local_port`` = the returned port) calls in to
    ``dids``; it does not register, and its keep-alive is an hour away."""
    port = free_port()
    trunk = TrunkRecord(
        tenant_id="acme",
        trunk_id="geo-in",
        name="Geo inbound",
        sip_server="127.0.0.1",
        sip_port=port,
        registers=False,
        keepalive_s=3600,
        dids=dids,
        ring_group=ring_group,
    )
    await (await bus.bucket(subjects.TRUNKS_KV)).put(
        trunk_key("acme", "geo-in"), trunk.model_dump_json().encode()
    )
    return port


def inbound_carrier(
    tmp_path: Path,
    gateway: Gateway,
    port: int,
    number: str,
    *,
    customer: str = "555123456",
    talk_ms: int = 3000,
) -> Sipp:
    """sipp as the carrier of :func:`add_inbound_trunk` delivering ``customer``'s call to ``number``
    from its own port; it echoes the audio it gets and hangs up after ``talk_ms``."""
    return Sipp(
        "carrier_inbound_uac",
        tmp_path,
        remote=gateway.sip,
        injection=[[customer, number]],
        calls=1,
        timeout=40,
        recv_timeout=30,
        local_port=port,
        extra_args=("-d", str(talk_ms), "-rtp_echo", "-mp", str(free_port())),
    )


async def call_events(
    bus: Bus, call_count: int = 1, timeout: float = 15, *, at_least: int = 0
) -> list[CallEventEnvelope]:
    """The call events on the bus, in order, until ``call_count`` calls have ended (and there are
    ``at_least`` events: ``call_count=0, at_least=1`` waits for the first)."""
    sub = await bus.js.pull_subscribe(subjects.call_events(), stream=subjects.CALL_EVENTS.name)
    found: list[CallEventEnvelope] = []
    async with asyncio.timeout(timeout):
        while [e.type for e in found].count("call.ended") < call_count or len(found) < at_least:  # type: ignore[attr-defined]
            try:
                for msg in await sub.fetch(20, timeout=0.5):
                    event = parse_event(msg.data)
                    assert isinstance(event, CallEventEnvelope)
                    found.append(event)
            except nats.errors.TimeoutError:
                continue
    return found
