"""Calls that ring a browser, with aiortc as the browser answering our offer, over a real nats-server.

Everything runs in a network namespace the test creates (``unshare -n``): see namespace_ring.py.
Tones are checked by FFT at the far end; pauses and resumptions by the worker's counters.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.netns import assert_tone, run_scenario

pytestmark = pytest.mark.needs_nats


def run_in_namespace(scenario: str) -> dict[str, Any]:
    return run_scenario("tests.media.namespace_ring", scenario, timeout=120)


def test_inbound_call_rings_aiortc_which_answers_our_offer_then_holds_and_resumes() -> None:
    report = run_in_namespace("ring")
    offer = report["agent_sdp"]
    assert "a=ice-lite" in offer
    assert "a=setup:actpass" in offer
    assert "m=audio" in offer
    assert "UDP/TLS/RTP/SAVPF 0 8 101" in offer
    assert "c=IN IP4 10.99.0.1" in offer
    assert "a=setup:active" in report["browser_answer"]  # aiortc, like Chromium: we are the DTLS server
    assert report["answer_reply"] is None
    assert report["connected"]
    assert_tone(report["browser_heard"], 1000)
    assert_tone(report["carrier_heard"], 440)
    # Garbage in a re-offer: the typed refusal signaling turns into a 488, and the audio goes on.
    assert report["garbage"] == "bad_sdp"
    assert report["audio_after_garbage"]
    # Hold (sendonly) is answered recvonly: nothing is sent to the browser; it is still heard.
    assert "a=recvonly" in report["hold_answer"]
    assert "a=setup:passive" in report["hold_answer"]  # the DTLS association is kept
    assert report["hold_paused"]
    assert report["hold_sent_meanwhile"] == 0
    assert report["hold_carrier_still_hears"] > 0
    assert "a=sendrecv" in report["resume_answer"]
    assert report["resumed"]
    assert_tone(report["browser_heard_after_resume"], 1000)
    assert report["counters"]["agent"]["srtp_rejected"] == 0
    assert report["ice_state"] == "completed"


def test_agent_to_agent_between_two_aiortc_browsers() -> None:
    report = run_in_namespace("agents")
    assert "a=setup:passive" in report["agent_sdp"]  # our answer to the caller
    assert "a=setup:actpass" in report["customer_sdp"]  # our offer to the callee
    assert report["connected"]
    assert_tone(report["caller_heard"], 1000)
    assert_tone(report["callee_heard"], 440)
    for leg in ("agent", "customer"):
        assert report["counters"][leg]["srtp_rejected"] == 0
