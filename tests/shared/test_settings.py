"""Settings: shared and per-service environment names, and the port list others read."""

from __future__ import annotations

import pytest

from shared.settings import ApiSettings, MediaSettings, SignalingSettings


def test_shared_and_own_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHODESK_NATS_URL", "nats://bus:4222")
    monkeypatch.setenv("ECHODESK_SIGNALING_SIP_UDP_PORT", "5070")
    monkeypatch.setenv("ECHODESK_MEDIA_HEALTH_PORT", "9999")
    monkeypatch.setenv("ECHODESK_HEALTH_PORT", "1")  # no such shared setting: ignored
    signaling, media = SignalingSettings(), MediaSettings()
    assert (signaling.nats_url, media.nats_url) == ("nats://bus:4222", "nats://bus:4222")
    assert (signaling.sip_udp_port, signaling.health_port) == (5070, 9101)
    assert media.health_port == 9999


def test_default_ports_are_the_documented_ones() -> None:
    # ARCHITECTURE.md, "Entry points and default ports": what users of the old guide configured.
    assert SignalingSettings.port_settings() == {
        "health_port": 9101,
        "sip_udp_port": 5060,
        "sip_tcp_port": 5060,
        "sip_tls_port": 5061,
        "sip_ws_port": 8088,
        "sip_wss_port": 8089,
    }
    assert MediaSettings.port_settings() == {"health_port": 9102, "webrtc_port": 7882}
    media = MediaSettings()
    assert (media.rtp_port_min, media.rtp_port_max) == (10000, 20000)  # Asterisk's rtp.conf range
    assert ApiSettings.port_settings() == {"http_port": 8000}


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHODESK_SIGNALING_SIP_UDP_PORT", "many")
    with pytest.raises(ValueError, match="sip_udp_port"):
        SignalingSettings()


def test_production_logs_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHODESK_ENVIRONMENT", "production")
    assert SignalingSettings().json_logs is True
    monkeypatch.setenv("ECHODESK_LOG_JSON", "false")
    assert SignalingSettings().json_logs is False
