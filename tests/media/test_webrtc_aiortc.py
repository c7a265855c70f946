"""A real WebRTC peer (aiortc's RTCPeerConnection playing the browser) against our ICE-lite port.

The peers and our endpoint run in a network namespace the test creates (``unshare -n``), with a private
address that exists only there (see namespace_echo.py): aiortc skips loopback when it gathers, and no
packet can leave the machine. Each peer sends a tone, our session echoes it, and the peer checks by FFT
that it hears its own frequency back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support.tools import IN_CI, REPO_ROOT, require_tool


def run_in_namespace(*peers: str, uvloop: bool = False) -> dict[str, Any]:
    unshare = require_tool("unshare")
    require_tool("ip")
    # Root may create a network namespace directly; anyone else inside a user namespace of their own.
    flags = "-n" if os.geteuid() == 0 else "-rn"
    command = [unshare, flags, sys.executable, "-m", "tests.media.namespace_echo"]
    command += [f"--peer={peer}" for peer in peers]
    if uvloop:
        command.append("--uvloop")
    process = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if process.returncode != 0 and "unshare" in process.stderr and not process.stdout:
        message = f"cannot create a network namespace: {process.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert process.returncode == 0, process.stderr[-3000:]
    report: dict[str, Any] = json.loads(process.stdout)
    return report


def assert_heard_own_tone(peer: dict[str, Any]) -> None:
    heard = peer["heard"]
    assert heard is not None, f"no echo came back: {peer}"
    assert abs(heard["dominant_hz"] - peer["frequency"]) <= 10, peer
    assert heard["purity"] > 0.9, peer  # the tone, not noise with a peak somewhere
    assert heard["rms"] > 1000, peer  # and loud: the tone was sent at 8000/32768 of full scale
    assert peer["ice_state"] == "completed"
    assert peer["session_state"] == "connected"
    assert peer["answer_codec"] == "PCMU/8000"  # aiortc offers opus first: our preference won
    assert peer["echoed"] > 0
    assert peer["session_counters"]["srtp_rejected"] == 0


def test_aiortc_peer_hears_its_440_hz_tone_echoed() -> None:
    report = run_in_namespace("440:passive")
    assert report["loop"] == "asyncio"
    [peer] = report["peers"]
    assert_heard_own_tone(peer)
    assert "a=ice-lite" in peer["answer"]
    assert "a=setup:passive" in peer["answer"]
    assert f"10.99.0.1 {report['port']} typ host" in peer["answer"]
    assert report["mux_counters"]["errors"] == 0


def test_two_aiortc_peers_on_one_port_each_hear_their_own_tone() -> None:
    # Different tones, so crossed streams would show; one session is the DTLS client (setup:active);
    # on uvloop, the worker's loop.
    report = run_in_namespace("440:passive", "1000:active", uvloop=True)
    assert report["loop"] == "uvloop"
    first, second = report["peers"]
    assert_heard_own_tone(first)
    assert_heard_own_tone(second)
    assert "a=setup:active" in second["answer"]
    assert report["mux_counters"]["errors"] == 0
    assert report["mux_counters"]["stun_answered"] >= 2
