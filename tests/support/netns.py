"""Run one test inside a network namespace of its own, where only loopback exists.

A whole-stack test with a browser would otherwise let Chromium gather the machine's real interfaces
and pair one of them with the gateway's loopback candidate: the packets stay on the host, but the
offer carries an outside address and the pair depends on the machine. Inside ``unshare -n`` with
``lo`` up there is nothing else, so every candidate, socket and packet is on 127.0.0.1::

    async def test_something(request: pytest.FixtureRequest) -> None:
        if not isolated():
            await asyncio.to_thread(rerun_isolated, request.node.nodeid)
            return
        ...  # the test proper, inside the namespace

or, for a whole-stack test that needs a nats-server of its own in there, :func:`with_nats_isolated`.

The test runs again there in a pytest of its own; its outcome (pass, skip or failure with the
inner output) becomes the outer test's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.nats import NatsServer
from tests.support.tools import IN_CI, REPO_ROOT, require_tool

#: Set in the inner pytest's environment; together with "only lo exists" it says we are inside.
ISOLATED_ENV = "ECHODESK_TEST_NETNS"


def isolated() -> bool:
    """Whether this process runs in a test's own network namespace (loopback only)."""
    return os.environ.get(ISOLATED_ENV) == "1" and [name for _, name in socket.if_nameindex()] == ["lo"]


def rerun_isolated(nodeid: str, timeout: float = 240) -> None:
    """Run the test ``nodeid`` in a new network namespace with only ``lo`` up, and adopt its outcome."""
    unshare = require_tool("unshare")
    require_tool("ip")
    # Root may create a network namespace directly; anyone else inside a user namespace of their own.
    flags = "-n" if os.geteuid() == 0 else "-rn"
    command = [
        unshare,
        flags,
        "--",
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-s",
        "-p",
        "no:cacheprovider",
        nodeid,
    ]
    process = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, ISOLATED_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = process.stdout + process.stderr
    if process.returncode != 0 and output.lstrip().startswith("unshare:"):
        message = f"cannot create a network namespace: {output.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    print(output)
    assert process.returncode == 0, f"the test failed inside its network namespace:\n{output[-20000:]}"
    if re.search(r"\b1 passed\b", output) is None:
        skipped = re.search(r"SKIPPED \[\d+\] (.*)", output)
        pytest.skip(skipped.group(1) if skipped else f"the test did not pass inside its namespace:\n{output}")


def run_scenario(module: str, scenario: str, timeout: float = 120) -> dict[str, Any]:
    """Run ``python -m <module> --scenario=<scenario>`` inside ``unshare -n`` and return the JSON
    report it prints last (the media scenarios in tests/media/namespace_*.py); skip (fail in CI)
    where no namespace can be made."""
    unshare = require_tool("unshare")
    require_tool("ip")
    flags = "-n" if os.geteuid() == 0 else "-rn"
    process = subprocess.run(
        [unshare, flags, sys.executable, "-m", module, f"--scenario={scenario}"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if process.returncode != 0 and "unshare" in process.stderr and not process.stdout:
        message = f"cannot create a network namespace: {process.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert process.returncode == 0, process.stderr[-3000:]
    # The worker logs to stdout too: the report is the last line.
    report: dict[str, Any] = json.loads(process.stdout.strip().splitlines()[-1])
    return report


def assert_tone(heard: dict[str, float] | None, frequency: float) -> None:
    """A scenario's analysis of what a peer heard: ``frequency``, clean and loud."""
    assert heard is not None
    assert abs(heard["dominant_hz"] - frequency) <= 10, heard
    assert heard["purity"] > 0.9, heard
    assert heard["rms"] > 1000, heard


async def with_nats_isolated(
    request: pytest.FixtureRequest, tmp_path: Path, body: Callable[[NatsServer, Path], Awaitable[None]]
) -> None:
    """Run ``body`` in the test's own loopback-only namespace (the test runs again there), with a
    nats-server of its own started inside and stopped after."""
    if not isolated():
        await asyncio.to_thread(rerun_isolated, request.node.nodeid)
        return
    nats_server = NatsServer(store_dir=tmp_path / "nats").start()
    try:
        await body(nats_server, tmp_path)
    finally:
        nats_server.stop()
