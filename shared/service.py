"""What every service process does the same way: logging, uvloop, the bus, health, heartbeats,
and a graceful shutdown on SIGTERM (stop taking work, finish within a deadline, then exit).

A service implements :class:`Service`; ``run(service, settings)`` does the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import signal
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

from shared import subjects
from shared.bus import Bus, BusError
from shared.health import HealthServer
from shared.heartbeat import Heartbeat, InstanceState
from shared.logging import configure_logging, get_logger
from shared.settings import CommonSettings

log = get_logger("echodesk.service")

#: Exit code of a service that could not start for a reason a person must fix (port taken, ...).
EXIT_CONFIG = 2


class PortInUse(Exception):
    """A listening port is taken; the message names the port and the setting that moves it."""

    def __init__(self, settings: type[CommonSettings], setting: str, port: int) -> None:
        super().__init__(
            f"{settings.service}: port {port} is already in use; "
            f"set {settings.env_name(setting)} to use another"
        )


class StartFailed(Exception):
    """A service cannot start for a reason its message names (a database it cannot reach, say);
    the process exits with one log line instead of a traceback."""


def is_address_in_use(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRINUSE, errno.EACCES)


@dataclass
class ServiceContext:
    settings: CommonSettings
    bus: Bus
    #: Set when SIGTERM arrived: stop taking new work.
    draining: asyncio.Event = field(default_factory=asyncio.Event)


class Service(Protocol):
    async def start(self, ctx: ServiceContext) -> None:
        """Start serving; raise :class:`PortInUse` for a taken port, :class:`StartFailed` otherwise."""

    async def drain(self) -> None:
        """Stop taking new work and return once the work in hand is finished."""

    async def stop(self) -> None:
        """Release everything; called after drain or when its deadline passed."""

    def load(self) -> tuple[int, int]:
        """(active, capacity) for the heartbeat; (0, 0) where it does not apply."""


def package_version() -> str:
    try:
        return version("echodesk-voice")
    except PackageNotFoundError:
        return "0+unknown"


def run(service: Service, settings: CommonSettings) -> None:
    """Run ``service`` until SIGTERM/SIGINT; exits the process with a meaningful code."""
    configure_logging(settings.service, json=settings.json_logs, level=settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        log.warning("uvloop missing, using the default event loop")
    try:
        code = asyncio.run(_main(service, settings))
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


async def _main(service: Service, settings: CommonSettings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started_at = datetime.now(UTC)
    state = InstanceState.STARTING
    bus: Bus | None = None

    def readiness() -> tuple[bool, dict[str, object]]:
        connected = bus is not None and bus.connected
        return state is InstanceState.READY and connected, {"state": state.value, "nats": connected}

    health = HealthServer(settings.service, readiness)
    health_url = None
    if settings.health_port:
        try:
            port = await health.start(settings.health_host, settings.health_port)
            health_url = f"http://127.0.0.1:{port}/healthz"
        except OSError as exc:
            if is_address_in_use(exc):
                print(PortInUse(type(settings), "health_port", settings.health_port), file=sys.stderr)
                return EXIT_CONFIG
            raise
    try:
        bus = await Bus.connect(
            settings.nats_url,
            name=f"{settings.service}-{settings.instance_id}",
            timeout=settings.nats_connect_timeout_s,
        )
        await bus.ensure_streams(replicas=settings.nats_replicas)
        await bus.ensure_buckets(replicas=settings.nats_replicas)
    except BusError as exc:
        log.error("cannot start without NATS", error=str(exc))
        await health.stop()
        return 1
    ctx = ServiceContext(settings=settings, bus=bus)
    try:
        await service.start(ctx)
    except PortInUse as exc:
        print(exc, file=sys.stderr)
        await bus.close()
        await health.stop()
        return EXIT_CONFIG
    except StartFailed as exc:
        log.error("cannot start", reason=str(exc))
        with contextlib.suppress(Exception):
            await service.stop()
        await bus.close()
        await health.stop()
        return 1
    # What start-up made (modules, pydantic's schemas, settings: ~200k objects in signaling) lives as
    # long as the process; moved out of the collector's generations, a full collection walks only
    # what was made since, instead of pausing every call in flight for tens of milliseconds.
    gc.freeze()
    state = InstanceState.READY
    log.info("service ready", instance=settings.instance_id, version=package_version(), health=health_url)

    async def beat() -> None:
        while True:
            active, capacity = service.load()
            heartbeat = Heartbeat(
                service=settings.service,
                instance_id=settings.instance_id,
                version=package_version(),
                state=state,
                started_at=started_at,
                sent_at=datetime.now(UTC),
                interval_s=settings.heartbeat_interval_s,
                active=active,
                capacity=capacity,
                health_url=health_url,
            )
            with contextlib.suppress(Exception):
                await ctx.bus.publish(subjects.heartbeat(settings.service, settings.instance_id), heartbeat)
            await asyncio.sleep(settings.heartbeat_interval_s)

    beater = asyncio.create_task(beat())
    await stop.wait()
    log.info("draining", deadline_s=settings.drain_timeout_s)
    state = InstanceState.DRAINING
    ctx.draining.set()
    try:
        async with asyncio.timeout(settings.drain_timeout_s):
            await service.drain()
    except TimeoutError:
        log.warning("drain deadline passed, stopping with work in hand")
    beater.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beater
    await service.stop()
    await bus.close()
    await health.stop()
    log.info("stopped")
    return 0
