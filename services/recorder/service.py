"""A recorder process: turns audio chunks from the bus into recording files."""

from __future__ import annotations

from shared.logging import get_logger
from shared.service import ServiceContext
from shared.settings import RecorderSettings

log = get_logger("echodesk.recorder")


class RecorderService:
    def __init__(self, settings: RecorderSettings) -> None:
        self.settings = settings

    async def start(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        # Fail at start-up, not at the first call, when the recordings directory is unusable.
        self.settings.recordings_dir.mkdir(parents=True, exist_ok=True)
        log.info("recordings directory", path=str(self.settings.recordings_dir.resolve()))

    async def drain(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def load(self) -> tuple[int, int]:
        return (0, 0)
