"""The signaling service process: owns the SIP transports and, through them, every call's signaling."""

from __future__ import annotations

from shared.logging import get_logger
from shared.service import ServiceContext
from shared.settings import SignalingSettings

log = get_logger("echodesk.signaling")


class SignalingService:
    def __init__(self, settings: SignalingSettings) -> None:
        self.settings = settings
        self.ctx: ServiceContext | None = None

    async def start(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def drain(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def load(self) -> tuple[int, int]:
        return (0, 0)
