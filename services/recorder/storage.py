"""Where finished recordings go: a local directory (the default) or any S3-compatible store.

Object keys are ``<tenant>/<yyyy>/<mm>/<dd>/<call>-<recording>.<ext>`` by the call's start (UTC), so
a tenant's recordings of a day are one prefix (retention and legal holds work per prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from shared.settings import RecorderSettings


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
            key = Path(unquote(parsed.path)).relative_to(self.root.resolve())
        except ValueError:
            return None  # outside the recordings directory: never ours to delete
        return key.as_posix()

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


class S3Storage:
    def __init__(self, settings: RecorderSettings) -> None:
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _connect(self) -> Any:
        if self._client is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            settings = self.settings
            config = AioConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    endpoint_url=settings.s3_endpoint_url,
                    region_name=settings.s3_region,
                    aws_access_key_id=settings.s3_access_key_id,
                    aws_secret_access_key=settings.s3_secret_access_key,
                    config=config,
                )
            )
        return self._client

    async def put(self, source: Path, key: str, content_type: str) -> str:
        bucket = self.settings.s3_bucket
        try:
            client = await self._connect()
            body = await asyncio.to_thread(source.read_bytes)
            await client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except Exception as exc:
            raise StorageError(f"s3 put {bucket}/{key}: {type(exc).__name__}: {exc}") from exc
        return f"s3://{bucket}/{key}"

    def key_of(self, location: str) -> str | None:
        prefix = f"s3://{self.settings.s3_bucket}/"
        return location[len(prefix) :] if location.startswith(prefix) else None

    async def delete(self, key: str) -> bool:
        bucket = self.settings.s3_bucket
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


def storage_for(settings: RecorderSettings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    if settings.storage == "local":
        return LocalStorage(settings.recordings_dir)
    raise ValueError(f"storage {settings.storage!r} is not local or s3")


__all__ = ["LocalStorage", "S3Storage", "Storage", "StorageError", "object_key", "storage_for"]
