"""The api process: the database (migrated at start-up), the development bootstrap, the KV
publisher, and the FastAPI app under uvicorn inside the shared service runtime."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn

from services.api.app import create_app
from services.api.db import Database
from services.api.db.migrate import current_revision, upgrade
from services.api.ingestion import EventIngestion
from services.api.instances import InstanceDirectory
from services.api.publishing import ConfigPublisher
from services.api.recording_stores import RecordingStores
from services.api.retention import RetentionSweeper
from services.api.tenancy import bootstrap_development
from services.api.webhooks import WebhookDispatcher, WebhookPolicy
from shared import subjects
from shared.heartbeat import Heartbeat
from shared.logging import get_logger
from shared.service import PortInUse, ServiceContext, StartFailed, is_address_in_use
from shared.settings import ApiSettings

log = get_logger("echodesk.api")

#: How long start-up waits for the first full publish before serving anyway (it keeps retrying).
INITIAL_PUBLISH_TIMEOUT_S = 30.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the service runtime owns SIGTERM and drains."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiService:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.instances = InstanceDirectory()
        self.db: Database | None = None
        self.publisher: ConfigPublisher | None = None
        self.retention: RetentionSweeper | None = None
        self._stores: RecordingStores | None = None
        self.webhooks: WebhookDispatcher | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ctx: ServiceContext | None = None

    def _ready(self) -> bool:
        return (
            self._ctx is not None
            and self._ctx.bus.connected
            and not self._ctx.draining.is_set()
            and self.publisher is not None
            and self.publisher.synced.is_set()
        )

    async def start(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        sock = self._bind()  # a taken port is reported before any database work
        try:
            self.db = await self._open_database()
            await bootstrap_development(self.db, self.settings)
        except BaseException:
            sock.close()
            raise
        self.publisher = ConfigPublisher(self.db, ctx.bus, retry_interval_s=self.settings.kv_retry_interval_s)
        try:
            async with asyncio.timeout(INITIAL_PUBLISH_TIMEOUT_S):
                await self.publisher.publish_all()
        except Exception as exc:
            # Not fatal: the publisher keeps trying, and /readyz says "not ready" until it succeeds.
            log.warning("configuration not yet published to NATS KV", error=str(exc) or type(exc).__name__)
        self.publisher.start()

        async def on_heartbeat(beat: Heartbeat, _subject: str) -> None:
            self.instances.record(beat)

        await ctx.bus.subscribe(subjects.heartbeat(), Heartbeat, on_heartbeat)
        # The call log and the webhooks each consume every event stream durably: what happened
        # while no api ran is taken in now.
        await EventIngestion(self.db).start(ctx.bus, max_deliver=self.settings.max_deliver)
        self.webhooks = WebhookDispatcher(
            self.db, self.settings.secret_key, WebhookPolicy.from_settings(self.settings)
        )
        await self.webhooks.start(ctx.bus, max_deliver=self.settings.max_deliver)
        self.retention = RetentionSweeper(self.db, self.settings)
        self.retention.start()
        app = create_app(
            self.settings,
            self.db,
            instances=self.instances,
            ready=self._ready,
            publisher=self.publisher,
            webhooks=self.webhooks,
            bus=ctx.bus,
        )
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="websockets-sansio",  # the live event streams; uvicorn's other websockets mode is deprecated
            timeout_graceful_shutdown=max(1, int(self.settings.drain_timeout_s)),
        )
        self._stores = app.state.recording_stores
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        log.info("web UI", url=f"http://127.0.0.1:{sock.getsockname()[1]}/")

    async def _open_database(self) -> Database:
        try:
            db = Database(self.settings.database_url)
        except ValueError as exc:
            raise StartFailed(str(exc)) from exc
        try:
            await upgrade(db)
            revision = await current_revision(db)
        except Exception as exc:
            await db.dispose()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StartFailed(f"database {db.describe()} cannot be migrated: {reason}") from exc
        log.info("database ready", url=db.describe(), revision=revision)
        return db

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
        if self.publisher is not None:
            # Changes made just before SIGTERM go out now rather than at the next start-up.
            await self.publisher.settle(timeout=min(5.0, self.settings.drain_timeout_s / 2))

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.publisher is not None:
            await self.publisher.stop()
        if self.retention is not None:
            await self.retention.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self._stores is not None:
            await self._stores.close()
        if self.db is not None:
            await self.db.dispose()

    def load(self) -> tuple[int, int]:
        return (0, 0)
