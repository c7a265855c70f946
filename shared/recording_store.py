"""Where finished recordings live: a local directory (the default) or any S3-compatible store.

The recorder writes and deletes; the api reads (downloads with HTTP Range). Both go through these
classes, so a location one writes is a location the other reads the same way.

Object keys are ``<tenant>/<yyyy>/<mm>/<dd>/<call>-<recording>.<ext>`` by the call's start (UTC), so
a tenant's recordings of a day are one prefix (retention and legal holds work per prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

#: Bytes read from the store per chunk of a download.
READ_CHUNK = 64 * 1024


class StorageError(Exception):
    """The store refused or could not be reached; the message says which and why."""


def object_key(tenant_id: str, started_at: float, call_id: str, recording_id: str, extension: str) -> str:
    day = datetime.fromtimestamp(started_at, UTC)
    return f"{tenant_id}/{day:%Y/%m/%d}/{call_id}-{recording_id}.{extension}"


class Storage(Protocol):
    async def put(self, source: Path, key: str, content_type: str) -> str:
        """Store a copy of ``source`` under ``key``; returns its location (a URL)."""

    def key_of(self, location: str) -> str | None:
        """The key of a location this store gave, or None when it is not one of its own."""

    async def size(self, key: str) -> int | None:
        """The size of ``key`` in bytes; None when it is not there."""

    def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` to ``end`` (inclusive, as in an HTTP Range) of ``key``, a chunk at a time."""

    async def delete(self, key: str) -> bool:
        """Remove ``key``; False when it was not there."""

    async def close(self) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, source: Path, key: str, content_type: str) -> str:
        target = self.root / key
        try:
            await asyncio.to_thread(_copy_durably, source, target)
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return target.resolve().as_uri()

    def key_of(self, location: str) -> str | None:
        parsed = urlparse(location)
        if parsed.scheme != "file":
            return None
        try:
            # Resolved first: a location with ``..`` in it must not reach outside the directory.
            key = Path(unquote(parsed.path)).resolve().relative_to(self.root.resolve())
        except ValueError:
            return None  # outside the recordings directory: never ours to read or delete
        return key.as_posix()

    async def size(self, key: str) -> int | None:
        try:
            return (self.root / key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc

    async def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        try:
            handle = await asyncio.to_thread(open, self.root / key, "rb")
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc
        try:
            handle.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(READ_CHUNK, left))
                if not chunk:
                    raise StorageError(f"{key} ended {left} bytes early")
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> bool:
        try:
            (self.root / key).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror or exc}") from exc
        return True

    async def close(self) -> None:
        return None


def _copy_durably(source: Path, target: Path) -> None:
    """A hard link when the spool shares the file system (no copy: the recorder synced the file when
    it finished it), else a synced copy; either appears under its name whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(partial, target)


@dataclass(frozen=True)
class S3Config:
    """An S3-compatible bucket and how to reach it (the recorder's and the api's settings)."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


class S3Storage:
    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> Any:
        async with self._connecting:  # concurrent first requests share one client
            if self._client is None:
                self._client = await self._open()
        return self._client

    async def _open(self) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = self.config
        options = AioConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
        return await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=config.endpoint_url,
                region_name=config.region,
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                config=options,
            )
        )

    async def put(self, source: Path, key: str, content_type: str) -> str:
        bucket = self.config.bucket
        try:
            client = await self._connect()
            body = await asyncio.to_thread(source.read_bytes)
            await client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except Exception as exc:
            raise StorageError(f"s3 put {bucket}/{key}: {type(exc).__name__}: {exc}") from exc
        return f"s3://{bucket}/{key}"

    def key_of(self, location: str) -> str | None:
        prefix = f"s3://{self.config.bucket}/"
        return location[len(prefix) :] if location.startswith(prefix) else None

    async def size(self, key: str) -> int | None:
        bucket = self.config.bucket
        try:
            client = await self._connect()
            try:
                head = await client.head_object(Bucket=bucket, Key=key)
            except client.exceptions.ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise
        except Exception as exc:
            raise StorageError(f"s3 head {bucket}/{key}: {type(exc).__name__}: {exc}") from exc
        return int(head["ContentLength"])

    async def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        bucket = self.config.bucket
        try:
            client = await self._connect()
            # A ranged GET (RFC 9110 14.1.2): the store sends only the part asked for.
            response = await client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
        except Exception as exc:
            raise StorageError(f"s3 get {bucket}/{key}: {type(exc).__name__}: {exc}") from exc
        async with response["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    async def delete(self, key: str) -> bool:
        bucket = self.config.bucket
        try:
            client = await self._connect()
            try:
                await client.head_object(Bucket=bucket, Key=key)
            except client.exceptions.ClientError:
                return False
            await client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise StorageError(f"s3 delete {bucket}/{key}: {type(exc).__name__}: {exc}") from exc
        return True

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()


def _status(error: Any) -> int | None:
    status = getattr(error, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


__all__ = [
    "LocalStorage",
    "S3Config",
    "S3Storage",
    "Storage",
    "StorageError",
    "object_key",
]
