"""``/v1/recordings``: what the recorders announced about each call's recording (metadata; the
audio stays where the recorder stored it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select, tuple_

from services.api import cursors
from services.api.db import Recording
from services.api.deps import Reader, Session
from services.api.schemas.calls import CompressedCopy, RecordingOut, RecordingPage

router = APIRouter(prefix="/v1/recordings", tags=["recordings"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such recording in the caller's tenant"}
}


def recording_out(recording: Recording) -> RecordingOut:
    return RecordingOut(
        id=recording.id,
        call_id=recording.call_id,
        status=recording.status,
        format=recording.format,
        channels=recording.channels,
        sample_rate=recording.sample_rate,
        duration_s=recording.duration_s,
        size_bytes=recording.size_bytes,
        sha256=recording.sha256,
        location=recording.location,
        failure_reason=recording.failure_reason,
        chunks_missing=recording.chunks_missing,
        paused_s=recording.paused_s,
        compressed=CompressedCopy(
            location=recording.compressed_location,
            format=recording.compressed_format or "",
            size_bytes=recording.compressed_size_bytes,
            sha256=recording.compressed_sha256,
        )
        if recording.compressed_location is not None
        else None,
        deleted_at=recording.deleted_at,
        deletion_reason=recording.deletion_reason,
        started_at=recording.started_at,
        ended_at=recording.ended_at,
    )


@router.get("", responses={422: {"description": "A filter or the cursor is malformed"}})
async def list_recordings(
    session: Session,
    principal: Reader,
    call_id: Annotated[str | None, Query(max_length=64)] = None,
    status_: Annotated[
        Literal["recording", "completed", "failed", "deleted"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> RecordingPage:
    """The tenant's recordings, newest first (keyset pagination: pass ``next_cursor``)."""
    query = select(Recording).where(Recording.tenant_id == principal.tenant_id)
    if call_id is not None:
        query = query.where(Recording.call_id == call_id)
    if status_ is not None:
        query = query.where(Recording.status == status_)
    if cursor is not None:
        at, last_id = cursors.decode(cursor)
        # A row-value comparison: the index on (tenant, started_at, id) starts right at the cursor.
        query = query.where(tuple_(Recording.started_at, Recording.id) < tuple_(at, last_id))
    rows = list(
        await session.scalars(
            query.order_by(Recording.started_at.desc(), Recording.id.desc()).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1].started_at, rows[-1].id) if more else None
    return RecordingPage(items=[recording_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/{recording_id}", responses=_NOT_FOUND)
async def get_recording(recording_id: str, session: Session, principal: Reader) -> RecordingOut:
    recording = await session.get(Recording, (principal.tenant_id, recording_id[:64]))
    if recording is None or recording.id != recording_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no recording {recording_id}")
    return recording_out(recording)


__all__ = ["recording_out", "router"]
