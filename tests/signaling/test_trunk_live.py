"""Trunk registration against sipp playing the carrier's registrar, which verifies our digest
credentials itself (sipp's verifyauth) after answering 401 first."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import pytest

from shared import subjects
from shared.bus import Bus
from shared.events import TrunkRegistration, TrunkState, parse_event
from shared.records import TrunkRecord, TrunkTransport, trunk_key
from shared.sealing import seal
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sipp import Sipp, require_sipp

pytestmark = pytest.mark.needs_sipp

SECRET_KEY = "test-secret-key"


@dataclass
class Gateway:
    bus: Bus
    process: subprocess.Popen[str]
    events: list[TrunkRegistration]

    async def put_trunk(
        self, carrier_port: int, password: str, transport: TrunkTransport, *, expires_s: int = 300
    ) -> None:
        record = TrunkRecord(
            tenant_id="acme",
            trunk_id="carrier-1",
            name="Carrier",
            sip_server="127.0.0.1",
            sip_port=carrier_port,
            transport=transport,
            username="trunk1",
            domain="carrier.test",
            password_sealed=seal(password, SECRET_KEY),
            expires_s=expires_s,
        )
        kv = await self.bus.bucket(subjects.TRUNKS_KV)
        await kv.put(trunk_key("acme", "carrier-1"), record.model_dump_json().encode())

    async def delete_trunk(self) -> None:
        kv = await self.bus.bucket(subjects.TRUNKS_KV)
        await kv.delete(trunk_key("acme", "carrier-1"))

    async def next_state(self, *wanted: TrunkState, timeout: float = 15.0) -> TrunkRegistration:
        """The next trunk event in one of the ``wanted`` states (earlier ones are skipped)."""
        sub = await self.bus.js.pull_subscribe(
            subjects.trunk_events(), durable="test-trunks", stream=subjects.TRUNK_EVENTS.name
        )
        async with asyncio.timeout(timeout):
            while True:
                try:
                    msgs = await sub.fetch(1, timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    await msg.ack()
                    event = parse_event(msg.data)
                    assert isinstance(event, TrunkRegistration)
                    self.events.append(event)
                    if event.data.state in wanted:
                        return event


@pytest.fixture
async def gateway(nats_server: NatsServer) -> AsyncIterator[Gateway]:
    require_sipp()
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    env = {
        **free_ports_env("signaling"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_SECRET_KEY": SECRET_KEY,
        "ECHODESK_SIGNALING_SIP_PUBLIC_HOST": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_HOST": "127.0.0.1",
    }
    process = await asyncio.to_thread(start_service, "signaling", env)
    gateway = Gateway(bus, process, [])
    try:
        yield gateway
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, None, 30)
        await bus.close()
        assert process.returncode == 0, output
        assert "Traceback" not in output, output


@pytest.mark.parametrize(
    ("transport", "sipp_transport"), [(TrunkTransport.UDP, "u1"), (TrunkTransport.TCP, "t1")]
)
async def test_trunk_registers_with_digest_and_unregisters(
    gateway: Gateway, tmp_path: Path, transport: TrunkTransport, sipp_transport: str
) -> None:
    # Two carrier calls: the registration and the un-REGISTER, each challenged with 401 first.
    carrier = Sipp(
        "carrier_registrar_uas",
        tmp_path,
        transport=sipp_transport,  # type: ignore[arg-type]
        injection=[["trunk1", "s3cret"]],
        calls=2,
        timeout=30,
    )
    async with carrier:
        await gateway.put_trunk(carrier.port, "s3cret", transport)
        registered = await gateway.next_state(TrunkState.REGISTERED, TrunkState.FAILED)
        assert registered.data.state is TrunkState.REGISTERED, registered.data
        assert registered.data.expires_s == 300
        await gateway.delete_trunk()
        gone = await gateway.next_state(TrunkState.UNREGISTERED, TrunkState.FAILED)
        assert gone.data.state is TrunkState.UNREGISTERED, gone.data
        result = await carrier.wait_async(timeout=20)
    result.assert_success(calls=2)
    assert result.count("401", "Sent") == 2


async def test_wrong_trunk_password_fails_with_words(gateway: Gateway, tmp_path: Path) -> None:
    carrier = Sipp("carrier_registrar_uas", tmp_path, injection=[["trunk1", "s3cret"]], calls=1, timeout=30)
    async with carrier:
        await gateway.put_trunk(carrier.port, "not-it", TrunkTransport.UDP)
        failed = await gateway.next_state(TrunkState.FAILED, TrunkState.REGISTERED)
        result = await carrier.stop_async()
    assert failed.data.state is TrunkState.FAILED
    assert failed.data.sip_status == 403
    assert failed.data.reason is not None
    assert "carrier" in failed.data.reason.lower()
    assert failed.data.retry_in_s is not None
    assert failed.data.retry_in_s > 0
    assert result.count("403", "Sent") == 1


async def test_trunk_follows_423_min_expires(gateway: Gateway, tmp_path: Path) -> None:
    # The carrier wants at least 120 s; we ask for 60 s first and must come back with 120.
    carrier = Sipp(
        "carrier_registrar_423_uas", tmp_path, injection=[["trunk1", "s3cret"]], calls=1, timeout=30
    )
    async with carrier:
        await gateway.put_trunk(carrier.port, "s3cret", TrunkTransport.UDP, expires_s=60)
        registered = await gateway.next_state(TrunkState.REGISTERED, TrunkState.FAILED)
        result = await carrier.wait_async(timeout=20)
    assert registered.data.state is TrunkState.REGISTERED, registered.data
    assert registered.data.expires_s == 120
    result.assert_success(calls=1)
    assert result.count("423", "Sent") == 1
