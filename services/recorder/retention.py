"""Retention: a tenant's recordings are deleted once older than its policy's ``retention_days``
(KV ``tenants``, written by the api; no policy: kept until deleted on request).

Age comes from the object key, ``<tenant>/<yyyy>/<mm>/<dd>/<call>-<recording>.<ext>`` (the call's
start, UTC): a recording is due once the whole day it started on lies ``retention_days`` behind, so
it is kept at least that long and at most a day more. Reading the key alone (no metadata read, no
object time) makes the decision the same on every store and for a virtual clock.

One recorder at a time sweeps: the job's entry in KV ``recorder_jobs`` (:class:`~shared.recording.
RecorderJob`) is taken by compare-and-set when the last run is ``interval_s`` old (or its runner's
lease ran out: it died mid-sweep), and given back with the time of the run. Deleting is idempotent
(an object already gone is not an error), so a sweep cut short is simply done again by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import nats.js.errors
from nats.js.kv import KeyValue

from shared import subjects
from shared.bus import Bus
from shared.recording import RecorderJob
from shared.settings import RecorderSettings

JOB_KEY = "retention"
#: How long a sweep may hold the job before another recorder may take it over (s).
JOB_LEASE_S = 600.0

_KEY = re.compile(
    r"^(?P<tenant>[A-Za-z0-9_-]{1,64})/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P<call>[A-Za-z0-9_-]{1,64})-(?P<recording>[A-Za-z0-9_]{1,64})\.(?P<ext>wav|json|ogg)$"
)


@dataclass
class StoredRecording:
    """A recording as its store holds it: the keys of its audio, metadata and compressed copy."""

    tenant_id: str
    day: date
    call_id: str
    recording_id: str
    keys: list[str] = field(default_factory=list)


def group_keys(keys: list[str]) -> list[StoredRecording]:
    """The recordings named by ``keys`` (anything else under the prefix is not ours to judge)."""
    found: dict[tuple[str, str, str], StoredRecording] = {}
    for key in keys:
        match = _KEY.match(key)
        if match is None:
            continue
        try:
            day = date(int(match["y"]), int(match["m"]), int(match["d"]))
        except ValueError:
            continue
        ident = (match["tenant"], match["call"], match["recording"])
        stored = found.setdefault(ident, StoredRecording(match["tenant"], day, *ident[1:]))
        stored.keys.append(key)
    return list(found.values())


def expired(day: date, retention_days: int, now: float) -> bool:
    """Whether a recording of a call that started on ``day`` (UTC) is past the retention at ``now``."""
    end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return end_of_day + timedelta(days=retention_days) <= datetime.fromtimestamp(now, UTC)


class Listing(Protocol):
    async def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""

    async def close(self) -> None: ...


class LocalListing:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def keys(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._walk, prefix)

    def _walk(self, prefix: str) -> list[str]:
        base = self.root / prefix
        found = []
        for directory, _, files in os.walk(base):
            for name in files:
                found.append((Path(directory) / name).relative_to(self.root).as_posix())
        return found

    async def close(self) -> None:
        return None


class S3Listing:
    """The bucket's keys by ListObjectsV2 pages (1000 keys a request)."""

    def __init__(self, settings: RecorderSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._context: Any = None

    async def keys(self, prefix: str) -> list[str]:
        if self._client is None:
            from aiobotocore.session import get_session

            settings = self.settings
            self._context = get_session().create_client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=settings.s3_secret_access_key,
            )
            self._client = await self._context.__aenter__()
        found: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.settings.s3_bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    async def close(self) -> None:
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._client = self._context = None


def listing_for(settings: RecorderSettings) -> Listing:
    if settings.storage == "s3":
        return S3Listing(settings)
    return LocalListing(settings.recordings_dir)


class RetentionJob:
    """Who sweeps, and when: the job's entry in KV ``recorder_jobs``."""

    def __init__(
        self, bus: Bus, owner: str, interval_s: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.bus = bus
        self.owner = owner
        self.interval_s = interval_s
        self.clock = clock
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.bus.bucket(subjects.RECORDER_JOBS_KV)
        return self._kv

    async def claim(self) -> tuple[int, int] | None:
        """Take the job if a run is due and nobody runs it: (the entry's revision, runs so far)."""
        kv = await self._bucket()
        now = self.clock()
        taken = RecorderJob(owner=self.owner, expires_at=now + JOB_LEASE_S)
        try:
            entry = await kv.get(JOB_KEY)
        except nats.js.errors.KeyNotFoundError:
            try:
                return await kv.create(JOB_KEY, taken.model_dump_json().encode()), 0
            except nats.js.errors.KeyWrongLastSequenceError:
                return None  # another recorder created it first
        job = RecorderJob.model_validate_json(entry.value or b"{}")
        if job.owner is not None and job.expires_at > now:
            return None
        if job.last_run_at is not None and now - job.last_run_at < self.interval_s:
            return None
        taken = taken.model_copy(update={"last_run_at": job.last_run_at, "runs": job.runs})
        try:
            return await kv.update(JOB_KEY, taken.model_dump_json().encode(), last=entry.revision), job.runs
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def finish(self, revision: int, runs: int) -> None:
        """The sweep is over: the time of this run, for the next one's schedule."""
        kv = await self._bucket()
        job = RecorderJob(last_run_at=self.clock(), runs=runs)
        # Taken over after our lease ran out: that run's time stands.
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await kv.update(JOB_KEY, job.model_dump_json().encode(), last=revision)

    async def runs(self) -> int:
        kv = await self._bucket()
        try:
            entry = await kv.get(JOB_KEY)
        except nats.js.errors.KeyNotFoundError:
            return 0
        return RecorderJob.model_validate_json(entry.value or b"{}").runs


__all__ = [
    "JOB_KEY",
    "Listing",
    "LocalListing",
    "RetentionJob",
    "S3Listing",
    "StoredRecording",
    "expired",
    "group_keys",
    "listing_for",
]
