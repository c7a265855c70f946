"""The README's run command: the whole stack comes up, heals a crashed service, and leaves no
process behind; a taken port gets one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import SERVICE_SETTINGS
from shared.supervisor import free_port
from tests.support.processes import free_ports_env, get_json, health_url, wait_until
from tests.support.sip_client import SipClient

pytestmark = [pytest.mark.needs_nats, pytest.mark.slow]


def stack_env() -> dict[str, str]:
    return {
        **os.environ,
        **free_ports_env(*SERVICE_SETTINGS),
        "ECHODESK_HEARTBEAT_INTERVAL_S": "0.5",
        "ECHODESK_LOG_LEVEL": "WARNING",
    }


def descendants(pid: int) -> set[int]:
    """All processes below ``pid`` (from /proc), so the test can prove none outlives the stack."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else already listens on (the way 4222 is taken on a developer's machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def start_stack(tmp_path: Path, env: dict[str, str], nats_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared",
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            "--nats-port",
            str(nats_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_stack_starts_heals_and_stops_clean(tmp_path: Path, taken_port: int) -> None:
    env = stack_env()
    stack = start_stack(tmp_path, env, taken_port)
    urls = {name: health_url(name, env) for name in SERVICE_SETTINGS}
    try:
        wait_until(lambda: all(get_json(u)[0] == 200 for u in urls.values()), 60, "all four services ready")
        services_url = urls["api"].replace("/readyz", "/v1/services")

        def four_alive() -> bool:
            status, body = get_json(services_url)
            return status == 200 and {s["service"] for s in body if s["alive"]} == set(SERVICE_SETTINGS)  # type: ignore[union-attr]

        wait_until(four_alive, 20, "heartbeats of all four services")

        # The README's path for a newcomer: write an agent with the CLI, register a phone.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "shared",
                "agent",
                "--data-dir",
                str(tmp_path / "data"),
                "--tenant",
                "dev",
                "--agent-id",
                "a100",
                "--extension",
                "100",
                "--username",
                "100",
                "--domain",
                "dev.test",
                "--password",
                "pw-100",
            ],
            env={k: v for k, v in env.items() if k != "ECHODESK_NATS_URL"},
            check=True,
            timeout=30,
        )
        phone = SipClient(("127.0.0.1", int(env["ECHODESK_SIGNALING_SIP_UDP_PORT"])))
        wait_until(lambda: phone.register("100", "dev.test", "pw-100").status_code == 200, 10, "registration")
        phone.close()

        # A crashed service is started again by the supervisor.
        before = descendants(stack.pid)
        signaling = next(p for p in before if "services.signaling" in Path(f"/proc/{p}/cmdline").read_text())
        os.kill(signaling, signal.SIGKILL)
        wait_until(lambda: not alive(signaling), 5, "signaling to die")
        wait_until(lambda: get_json(urls["signaling"])[0] == 200, 30, "signaling to come back")

        everything = descendants(stack.pid)
        assert len(everything) >= 5  # nats-server and four services
    finally:
        stack.send_signal(signal.SIGINT)
        output, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0, output
    assert f"port {taken_port} is taken" in output
    assert "Web UI: http://127.0.0.1:" in output
    assert "restarting" in output
    assert "Traceback" not in output
    assert [p for p in everything if alive(p)] == []


def test_taken_service_port_is_one_clear_line(tmp_path: Path, taken_port: int) -> None:
    env = stack_env()
    env["ECHODESK_SIGNALING_HEALTH_PORT"] = str(taken_port)
    stack = start_stack(tmp_path, env, free_port())
    output, _ = stack.communicate(timeout=60)
    assert stack.returncode == 2, output
    assert f"signaling: port {taken_port} is already in use; set ECHODESK_SIGNALING_HEALTH_PORT" in output
    assert "Traceback" not in output
