"""The media worker over NATS with aiortc as the browser and a plain RTP peer as the carrier.

Everything (nats-server, the worker, aiortc, the RTP peer) runs in a network namespace the test
creates (``unshare -n``), on loopback and a private address that exists only there: see
namespace_bridge.py. Tones are checked by FFT at the far end.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.netns import assert_tone, run_scenario

pytestmark = pytest.mark.needs_nats


def run_in_namespace(scenario: str) -> dict[str, Any]:
    return run_scenario("tests.media.namespace_bridge", scenario, timeout=90)


def test_browser_and_carrier_hear_each_other_through_a_webrtc_rtp_bridge() -> None:
    report = run_in_namespace("bridge")
    assert "a=ice-lite" in report["agent_sdp"]
    assert "PCMU/8000" in report["agent_sdp"]
    assert "opus" not in report["agent_sdp"]  # passthrough: the browser was given G.711
    assert "m=audio" in report["customer_sdp"]
    assert "RTP/AVP 0 8 101" in report["customer_sdp"]
    assert "c=IN IP4 10.99.0.1" in report["customer_sdp"]
    assert_tone(report["browser_heard"], 1000)
    assert_tone(report["carrier_heard"], 440)
    # The carrier's digit became one MediaEvent; SendDtmf reached the carrier as RFC 4733 packets.
    digits = [e for e in report["events"] if e["kind"] == "dtmf"]
    assert [(e["digit"], e["leg"]) for e in digits] == [("7", "customer")]
    sent = report["carrier_events"]
    assert {e["event"] for e in sent} == {3}
    assert sent[0]["marker"]
    assert [e["end"] for e in sent[-3:]] == [True, True, True]
    assert {e["duration"] for e in sent[-3:]} == {960}
    assert report["counters"]["agent"]["srtp_rejected"] == 0
    closed = [e for e in report["events"] if e["kind"] == "closed"]
    assert len(closed) == 1
    quality = {q["leg"]: q for q in report["quality"]}
    assert quality["agent"]["packets_received"] > 40
    assert quality["customer"]["packets_received"] > 40


def test_aiortc_offering_only_opus_is_transcoded_to_the_carriers_g711() -> None:
    report = run_in_namespace("opus")
    assert "PCMU" not in report["browser_offer"]
    assert "opus/48000/2" in report["agent_sdp"]
    assert "PCMU/8000" not in report["agent_sdp"]
    assert "RTP/AVP 0 8 101" in report["customer_sdp"]
    assert report["relays"] == {"agent": "TranscodingRelay", "customer": "TranscodingRelay"}
    assert_tone(report["browser_heard"], 1000)
    assert_tone(report["carrier_heard"], 440)
    # DTMF with the carrier still works: its digit is reported, ours reaches it as RFC 4733 events.
    digits = [e for e in report["events"] if e["kind"] == "dtmf"]
    assert [(e["digit"], e["leg"]) for e in digits] == [("7", "customer")]
    assert {e["event"] for e in report["carrier_events"]} == {3}
    assert report["counters"]["agent"]["srtp_rejected"] == 0
    assert report["counters"]["agent"]["relay_malformed"] == 0
    quality = {q["leg"]: q for q in report["quality"]}
    assert quality["agent"]["codec"] == "opus/48000/2"
    assert quality["agent"]["packets_received"] > 40


def test_echo_session_over_nats_returns_the_browsers_tone() -> None:
    report = run_in_namespace("echo")
    assert "a=ice-lite" in report["agent_sdp"]
    assert_tone(report["browser_heard"], 440)
    [agent] = report["quality"]
    assert agent["packets_received"] > 40
