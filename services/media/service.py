"""A media worker process: bridges calls' audio between WebRTC and plain RTP legs."""

from __future__ import annotations

from shared.logging import get_logger
from shared.service import ServiceContext
from shared.settings import MediaSettings

log = get_logger("echodesk.media")


class MediaService:
    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self.sessions = 0

    async def start(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def drain(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def load(self) -> tuple[int, int]:
        return (self.sessions, self.settings.capacity)
