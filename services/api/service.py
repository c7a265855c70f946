"""The api process: hosts the FastAPI app with uvicorn inside the shared service runtime."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn

from services.api.app import create_app
from services.api.instances import InstanceDirectory
from shared import subjects
from shared.heartbeat import Heartbeat
from shared.logging import get_logger
from shared.service import PortInUse, ServiceContext, is_address_in_use
from shared.settings import ApiSettings

log = get_logger("echodesk.api")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the service runtime owns SIGTERM and drains."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiService:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.instances = InstanceDirectory()
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ctx: ServiceContext | None = None

    def _ready(self) -> bool:
        return self._ctx is not None and self._ctx.bus.connected and not self._ctx.draining.is_set()

    async def start(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

        async def on_heartbeat(beat: Heartbeat, _subject: str) -> None:
            self.instances.record(beat)

        await ctx.bus.subscribe(subjects.heartbeat(), Heartbeat, on_heartbeat)
        sock = self._bind()
        config = uvicorn.Config(
            create_app(self.instances, self._ready),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(self.settings.drain_timeout_s)),
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        log.info("web UI", url=f"http://127.0.0.1:{sock.getsockname()[1]}/")

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.settings.http_host, self.settings.http_port))
        except OSError as exc:
            sock.close()
            if is_address_in_use(exc):
                raise PortInUse(ApiSettings, "http_port", self.settings.http_port) from exc
            raise
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    async def drain(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def load(self) -> tuple[int, int]:
        return (0, 0)
