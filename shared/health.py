"""Health, readiness and Prometheus metrics over a minimal HTTP/1.1 server.

Signaling, media and recorder must not carry a web framework for three GET endpoints (the media
image carries no FastAPI), so this is plain asyncio: one request per connection, GET only.
``/healthz`` answers while the event loop runs; ``/readyz`` answers 200 only while the service
is connected to NATS and takes work (503 while draining); ``/metrics`` is Prometheus text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from shared.logging import get_logger

log = get_logger("echodesk.health")

_MAX_REQUEST_HEAD = 8192


class HealthServer:
    def __init__(self, service: str, readiness: Callable[[], tuple[bool, dict[str, object]]]) -> None:
        self.service = service
        self._readiness = readiness
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen and return the bound port; raises ``OSError`` when the port is taken."""
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        if len(head) > _MAX_REQUEST_HEAD:
            await self._reply(writer, 431, "text/plain", b"request header too large\n")
            return
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        except ValueError:
            await self._reply(writer, 400, "text/plain", b"malformed request line\n")
            return
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await self._reply(writer, 405, "text/plain", b"only GET\n", extra=b"Allow: GET, HEAD\r\n")
        elif path == "/healthz":
            await self._reply(
                writer, 200, "application/json", _json({"status": "ok", "service": self.service})
            )
        elif path == "/readyz":
            ready, detail = self._readiness()
            body = _json({"status": "ready" if ready else "not ready", "service": self.service, **detail})
            await self._reply(writer, 200 if ready else 503, "application/json", body)
        elif path == "/metrics":
            await self._reply(writer, 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        else:
            await self._reply(writer, 404, "text/plain", b"not found\n")

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, extra: bytes = b""
    ) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            431: "Request Header Fields Too Large",
            503: "Service Unavailable",
        }[status]
        head = (
            (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            ).encode()
            + extra
            + b"\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head + body)
            await writer.drain()
        writer.close()


def _json(value: dict[str, object]) -> bytes:
    return json.dumps(value, default=str).encode() + b"\n"
