"""Entry point of a media worker."""

from __future__ import annotations

from services.media.service import MediaService
from shared.service import run
from shared.settings import MediaSettings


def main() -> None:
    settings = MediaSettings()
    run(MediaService(settings), settings)
