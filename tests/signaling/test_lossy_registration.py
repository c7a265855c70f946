"""Registration over a UDP path that loses a fifth of the datagrams both ways: sipp's and our
retransmissions (RFC 3261 17.1.2.2, 17.2.2) carry it through."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from shared import subjects
from shared.bus import Bus
from shared.records import agent_key, agent_record
from tests.support.lossy_relay import LossyRelay
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sipp import Sipp, register_row, require_sipp

pytestmark = pytest.mark.needs_sipp

DOMAIN = "lossy.test"


async def test_registration_completes_through_20_percent_loss(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    require_sipp()
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    kv = await bus.bucket(subjects.AGENTS_KV)
    users = [f"2{n:02d}" for n in range(10)]
    for user in users:
        record = agent_record(
            tenant_id="acme",
            agent_id=f"a{user}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=f"pw-{user}",
        )
        await kv.put(agent_key(DOMAIN, user), record.model_dump_json().encode())
    env = {
        **free_ports_env("signaling"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5",  # what sipp can answer
    }
    process = await asyncio.to_thread(start_service, "signaling", env)
    relay = await LossyRelay(("127.0.0.1", int(env["ECHODESK_SIGNALING_SIP_UDP_PORT"])), loss=0.2).start()
    try:
        # Each call: REGISTER, 401, REGISTER with digest, 200, then un-REGISTER and its 200; ten of them
        # one after the other, every datagram on the way having a one-in-five chance to vanish.
        agent = Sipp(
            "register_digest_uac",
            tmp_path,
            remote=("127.0.0.1", relay.port),
            calls=len(users),
            limit=1,
            injection=[register_row(user, f"pw-{user}", DOMAIN, expires=300) for user in users],
            auth_uri=DOMAIN,
            timeout=120,
            recv_timeout=40,
        )
        result = await agent.run_async()
    finally:
        relay.close()
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, None, 30)
        await bus.close()
    result.assert_success(calls=len(users))
    assert relay.dropped > 0
    assert relay.dropped / (relay.dropped + relay.forwarded) == pytest.approx(0.2, abs=0.1)
    assert process.returncode == 0, output
