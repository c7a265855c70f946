"""Entry point of a recorder."""

from __future__ import annotations

from services.recorder.service import RecorderService
from shared.service import run
from shared.settings import RecorderSettings


def main() -> None:
    settings = RecorderSettings()
    run(RecorderService(settings), settings)
