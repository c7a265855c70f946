"""SIP.js 0.21 in headless Chromium registers with our registrar over WS and WSS, and leaves."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared import subjects
from shared.bus import Bus
from shared.devcert import self_signed
from shared.events import PresenceState
from shared.records import agent_key, agent_record
from tests.signaling.test_signaling_service import DOMAIN, presence_events
from tests.support.browser import AgentError, browser_agent
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service

pytestmark = pytest.mark.needs_chromium


@pytest.fixture
async def gateway(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], Bus]]:
    certificate = self_signed(tmp_path / "tls")
    env = {
        **free_ports_env("signaling"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_SIGNALING_TLS_CERT_FILE": str(certificate.cert_path),
        "ECHODESK_SIGNALING_TLS_KEY_FILE": str(certificate.key_path),
    }
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    kv = await bus.bucket(subjects.AGENTS_KV)
    record = agent_record(
        tenant_id="acme",
        agent_id="agent-100",
        extension="100",
        sip_username="100",
        domain=DOMAIN,
        password="browser-pw",
    )
    await kv.put(agent_key(DOMAIN, "100"), record.model_dump_json().encode())
    process = await asyncio.to_thread(start_service, "signaling", env)
    try:
        yield env, bus
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, None, 30)
        await bus.close()
        assert process.returncode == 0, output


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_sipjs_registers_and_unregisters(gateway: tuple[dict[str, str], Bus], scheme: str) -> None:
    env, bus = gateway
    port = env[f"ECHODESK_SIGNALING_SIP_{scheme.upper()}_PORT"]
    async with browser_agent(ignore_https_errors=True) as agent:
        registration = await agent.register(
            server=f"{scheme}://127.0.0.1:{port}/ws",
            aor=f"sip:100@{DOMAIN}",
            user="100",
            password="browser-pw",
            instance_id=str(uuid.uuid4()),
            reg_id=1,
        )
        assert registration.state == "Registered"
        [contact] = registration.contacts
        assert ".invalid" in contact
        await agent.unregister()
    registered, unregistered = await presence_events(bus, 2)
    assert (registered.data.state, registered.data.transport) == (PresenceState.REGISTERED, scheme)
    assert registered.data.user_agent is not None
    assert registered.data.user_agent.startswith("SIP.js")
    assert unregistered.data.state is PresenceState.UNREGISTERED


async def test_sipjs_with_a_wrong_password_is_refused(gateway: tuple[dict[str, str], Bus]) -> None:
    env, _ = gateway
    async with browser_agent() as agent:
        with pytest.raises(AgentError) as refused:
            await agent.register(
                server=f"ws://127.0.0.1:{env['ECHODESK_SIGNALING_SIP_WS_PORT']}/ws",
                aor=f"sip:100@{DOMAIN}",
                user="100",
                password="not-the-password",
            )
        assert refused.value.status == 401


async def test_closing_the_browser_ends_its_registration(gateway: tuple[dict[str, str], Bus]) -> None:
    env, bus = gateway
    async with browser_agent() as agent:
        await agent.register(
            server=f"ws://127.0.0.1:{env['ECHODESK_SIGNALING_SIP_WS_PORT']}/ws",
            aor=f"sip:100@{DOMAIN}",
            user="100",
            password="browser-pw",
        )
    # The page and its WebSocket are gone: the binding cannot be reached and goes (RFC 5626 5.2).
    registered, unregistered = await presence_events(bus, 2)
    assert registered.data.state is PresenceState.REGISTERED
    assert unregistered.data.state is PresenceState.UNREGISTERED
