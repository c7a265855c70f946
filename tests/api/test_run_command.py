"""What the run command tells the api: the softphone's WSS URL follows signaling's WSS port."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.supervisor import Supervisor


def test_the_wss_url_follows_a_moved_signaling_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECHODESK_API_PUBLIC_SIP_WSS_URL", raising=False)
    monkeypatch.delenv("ECHODESK_SIGNALING_SIP_WS_PATH", raising=False)
    monkeypatch.setenv("ECHODESK_SIGNALING_SIP_WSS_PORT", "18089")
    env = Supervisor(data_dir=tmp_path)._service_env()
    assert env["ECHODESK_API_PUBLIC_SIP_WSS_URL"] == "wss://localhost:18089/ws"

    monkeypatch.delenv("ECHODESK_SIGNALING_SIP_WSS_PORT")
    monkeypatch.setenv("ECHODESK_API_PUBLIC_SIP_WSS_URL", "wss://voice.example/ws")
    assert (
        Supervisor(data_dir=tmp_path)._service_env()["ECHODESK_API_PUBLIC_SIP_WSS_URL"]
        == "wss://voice.example/ws"
    )
    monkeypatch.delenv("ECHODESK_API_PUBLIC_SIP_WSS_URL")
    assert (
        Supervisor(data_dir=tmp_path)._service_env()["ECHODESK_API_PUBLIC_SIP_WSS_URL"]
        == "wss://localhost:8089/ws"
    )
