"""A service process on a real nats-server: bad input on its subjects is dead-lettered with a log
line while it keeps serving; SIGTERM drains and exits cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from datetime import UTC, datetime

import nats.errors
import pytest

from shared import subjects
from shared.bus import HDR_ORIGINAL_SUBJECT, Bus
from shared.heartbeat import Heartbeat, InstanceState
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, get_json, health_url, start_service


def service_env(service: str, nats_server: NatsServer) -> dict[str, str]:
    return {
        **free_ports_env(service),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_RECORDER_RECORDINGS_DIR": str(nats_server.store_dir.parent / "recordings"),
        # Never the development database under data/: a test must not bootstrap the dev tenant there.
        "ECHODESK_API_DATABASE_URL": f"sqlite+aiosqlite:///{nats_server.store_dir.parent / 'api.db'}",
        "ECHODESK_HEARTBEAT_INTERVAL_S": "0.2",
        "ECHODESK_LOG_JSON": "true",
    }


def stop(process: subprocess.Popen[str]) -> list[dict[str, object]]:
    """SIGTERM, wait, and return the JSON log lines the process wrote."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("service", ["signaling", "media", "recorder", "api"])
async def test_service_serves_health_beats_and_stops_on_sigterm(
    service: str, nats_server: NatsServer
) -> None:
    env = service_env(service, nats_server)
    process = await asyncio.to_thread(start_service, service, env)
    try:
        bus = await Bus.connect(nats_server.url, name="probe", timeout=5)
        beat: asyncio.Future[Heartbeat] = asyncio.get_running_loop().create_future()

        async def on_beat(hb: Heartbeat, _subject: str) -> None:
            if not beat.done():
                beat.set_result(hb)

        await bus.subscribe(subjects.heartbeat(service), Heartbeat, on_beat)
        heartbeat = await asyncio.wait_for(beat, 5)
        assert (heartbeat.service, heartbeat.state) == (service, InstanceState.READY)
        await bus.close()
        status, _ = await asyncio.to_thread(get_json, health_url(service, env, "/healthz"))
        assert status == 200
    finally:
        lines = await asyncio.to_thread(stop, process)
    events = [line["event"] for line in lines]
    assert "draining" in events
    assert events[-1] == "stopped"


async def test_malformed_message_is_dead_lettered_and_the_api_keeps_serving(nats_server: NatsServer) -> None:
    env = service_env("api", nats_server)
    process = await asyncio.to_thread(start_service, "api", env)
    bus = await Bus.connect(nats_server.url, name="probe", timeout=5)
    try:
        bad_subject = subjects.heartbeat("media", "w1")
        await bus.nc.publish(bad_subject, b'{"service": "media", "capacity": "lots"}')
        await bus.nc.publish(bad_subject, b"\xff\xfe garbage")
        now = datetime.now(UTC)
        good = Heartbeat(
            service="media",
            instance_id="w2",
            version="1",
            state=InstanceState.READY,
            started_at=now,
            sent_at=now,
            interval_s=60,
            active=3,
            capacity=10,
        )
        await bus.publish(subjects.heartbeat("media", "w2"), good)
        await bus.nc.flush()
        sub = await bus.js.pull_subscribe(subjects.dead_letter("core"), stream="DEAD_LETTERS")
        letters: list[nats.aio.msg.Msg] = []
        async with asyncio.timeout(10):
            while len(letters) < 2:
                try:
                    letters += await sub.fetch(2 - len(letters), timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
        assert {m.headers[HDR_ORIGINAL_SUBJECT] for m in letters if m.headers} == {bad_subject}
        # The good heartbeat is handled on its own time: wait for it to show (the api stayed up).
        wanted = {"service": "media", "instance_id": "w2", "active": 3}
        async with asyncio.timeout(10):
            while True:
                status, body = await asyncio.to_thread(get_json, health_url("api", env, "/v1/services"))
                assert status == 200
                assert isinstance(body, list)
                if wanted in [{k: s[k] for k in wanted} for s in body]:
                    break
                await asyncio.sleep(0.1)
    finally:
        await bus.close()
        lines = await asyncio.to_thread(stop, process)
    dead = [line for line in lines if line["event"] == "message dead-lettered"]
    assert len(dead) == 2
    assert all(line["subject"] == bad_subject for line in dead)
