"""Registration over SIP/TLS (RFC 3261 26.2) with a certificate the test makes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from shared import subjects
from shared.bus import Bus
from shared.devcert import self_signed
from shared.records import agent_key, agent_record
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sip_client import SipClient


async def test_registration_over_tls(nats_server: NatsServer, tmp_path: Path) -> None:
    certificate = self_signed(tmp_path / "tls")
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    kv = await bus.bucket(subjects.AGENTS_KV)
    record = agent_record(
        tenant_id="acme", agent_id="a1", extension="100", sip_username="100", domain="tls.test", password="pw"
    )
    await kv.put(agent_key("tls.test", "100"), record.model_dump_json().encode())
    env = {
        **free_ports_env("signaling"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_SIGNALING_TLS_CERT_FILE": str(certificate.cert_path),
        "ECHODESK_SIGNALING_TLS_KEY_FILE": str(certificate.key_path),
    }
    process = await asyncio.to_thread(start_service, "signaling", env)
    try:
        phone = SipClient(("127.0.0.1", int(env["ECHODESK_SIGNALING_SIP_TLS_PORT"])), "tls")
        response = await asyncio.to_thread(phone.register, "100", "tls.test", "pw")
        assert response.status_code == 200
        assert (response.headers.get("Via") or "").startswith("SIP/2.0/TLS ")
        phone.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, None, 30)
        await bus.close()
    assert process.returncode == 0, output
