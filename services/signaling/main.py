"""Entry point of the signaling service."""

from __future__ import annotations

from services.signaling.service import SignalingService
from shared.service import run
from shared.settings import SignalingSettings


def main() -> None:
    settings = SignalingSettings()
    run(SignalingService(settings), settings)
