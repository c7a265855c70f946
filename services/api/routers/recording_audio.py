"""The audio of recordings: downloads with HTTP Range (RFC 9110 section 14) from wherever the
recorder stored it (its local directory or S3), with an API key or with a short-lived signed link.

The api reads a recording only from the store its settings name (``ECHODESK_API_RECORDINGS_DIR``,
``ECHODESK_API_S3_*``) and only under the tenant's own prefix, whatever location an event gave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from services.api.byteranges import ByteRange, Unsatisfiable, requested_range
from services.api.calllog import RecordingStatus
from services.api.db import Recording
from services.api.deps import Reader, Session, Settings
from services.api.errors import Unavailable
from services.api.recording_stores import RecordingStores
from services.api.schemas.recording_audio import AudioFormat, RecordingLinkOut
from services.api.signed_urls import LinkRefused, RecordingLink, sign, verify
from shared.recording_store import Storage, StorageError

router = APIRouter(tags=["recordings"])

_CONTENT_TYPES: dict[str, str] = {"wav": "audio/wav", "ogg": "audio/ogg"}

_AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"audio/wav": {}, "audio/ogg": {}}, "description": "The whole file"},
    206: {"description": "The part a Range header asked for (Content-Range says which)"},
    304: {"description": "The caller's copy (If-None-Match) is current"},
    404: {"description": "No such recording in the tenant, or no audio of that format"},
    409: {"description": "The recording has no audio (still recording, failed)"},
    410: {"description": "The recording was deleted"},
    416: {"description": "The range starts past the end of the file"},
    503: {"description": "The store is unreachable, or not one this api reads"},
}


def _missing(recording_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no recording {recording_id}")


async def _recording(session: Any, tenant_id: str, recording_id: str) -> Recording:
    recording: Recording | None = await session.get(Recording, (tenant_id, recording_id[:64]))
    if recording is None or recording.id != recording_id:
        raise _missing(recording_id)
    return recording


def _audio_of(recording: Recording, fmt: AudioFormat) -> tuple[str, str | None]:
    """The location and sha256 of the recording's audio in ``fmt``, or why there is none."""
    if recording.status == RecordingStatus.DELETED:
        when = recording.deleted_at.isoformat() if recording.deleted_at else "earlier"
        raise HTTPException(
            status.HTTP_410_GONE,
            f"recording {recording.id} was deleted at {when}: {recording.deletion_reason or 'no reason'}",
        )
    if recording.status == RecordingStatus.FAILED:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"recording {recording.id} failed and has no audio: {recording.failure_reason}",
        )
    if recording.status != RecordingStatus.COMPLETED or recording.location is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"recording {recording.id} is still being written; try when completed"
        )
    if fmt == "ogg":
        if recording.compressed_location is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"recording {recording.id} has no Opus copy (not made yet, or compression is off): "
                "ask for format=wav",
            )
        return recording.compressed_location, recording.compressed_sha256
    return recording.location, recording.sha256


def _store_for(request: Request, location: str, tenant_id: str) -> tuple[Storage, str]:
    """The store holding ``location`` and its key there; only this api's stores, only the tenant's."""
    stores: RecordingStores = request.app.state.recording_stores
    found = stores.find(location)
    if found is None:
        raise Unavailable(
            f"the recording is stored at {location.split('/', 3)[0]}//..., a store this api does not "
            "read: set ECHODESK_API_RECORDINGS_DIR or ECHODESK_API_S3_* to the recorder's"
        )
    store, key = found
    if not key.startswith(f"{tenant_id}/"):
        # A location outside the tenant's prefix is never served, whatever an event said.
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no audio of this recording in the tenant's store")
    return store, key


def _etag(sha256: str | None) -> str | None:
    return f'"{sha256}"' if sha256 else None


def _etag_listed(header: str, etag: str) -> bool:
    """Whether an If-None-Match list names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


async def _serve(request: Request, recording: Recording, fmt: AudioFormat, cache: str) -> Response:
    location, sha256 = _audio_of(recording, fmt)
    store, key = _store_for(request, location, recording.tenant_id)
    etag = _etag(sha256)
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": cache,
        "Content-Disposition": f'inline; filename="{recording.call_id}-{recording.id}.{fmt}"',
    }
    if etag is not None:
        headers["ETag"] = etag
        match = request.headers.get("if-none-match")
        if match is not None and _etag_listed(match, etag):
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    try:
        size = await store.size(key)
    except StorageError as exc:
        raise Unavailable(f"the recordings store did not answer: {exc}") from exc
    if size is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"the audio of recording {recording.id} is no longer in the store (removed outside EchoDesk?)",
        )
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and (etag is None or if_range.strip() != etag):
        range_header = None  # If-Range (RFC 9110 13.1.5): the caller's part is of another file
    try:
        wanted = requested_range(range_header, size)
    except Unsatisfiable as exc:
        return Response(
            status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE,
            headers={**headers, "Content-Range": exc.content_range},
        )
    part = wanted or ByteRange(0, size - 1, size)
    headers["Content-Length"] = str(max(part.length, 0))
    if wanted is not None:
        headers["Content-Range"] = wanted.content_range
    code = status.HTTP_206_PARTIAL_CONTENT if wanted is not None else status.HTTP_200_OK
    if size == 0:
        return Response(status_code=code, headers=headers, media_type=_CONTENT_TYPES[fmt])
    chunks = store.read(key, part.start, part.end)
    try:
        # The first chunk before the status line: a store that fails now is a 503, not a cut file.
        first = await anext(chunks)
    except (StorageError, StopAsyncIteration) as exc:
        await chunks.aclose()
        raise Unavailable(f"the recordings store did not give the audio: {exc}") from exc

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return StreamingResponse(body(), status_code=code, headers=headers, media_type=_CONTENT_TYPES[fmt])


@router.get("/v1/recordings/{recording_id}/audio", responses=_AUDIO_RESPONSES, response_class=Response)
async def recording_audio(
    recording_id: str,
    request: Request,
    session: Session,
    principal: Reader,
    format: AudioFormat = "wav",
) -> Response:
    """The recording's audio (``wav``, or ``ogg``: the Opus copy), whole or the part a ``Range``
    header asks for; ``ETag`` is the file's sha256."""
    recording = await _recording(session, principal.tenant_id, recording_id)
    await session.close()  # the database is not needed while the file streams
    return await _serve(request, recording, format, "private, max-age=3600")


@router.get(
    "/v1/recordings/{recording_id}/audio-url",
    responses={404: {"description": "No such recording in the caller's tenant"}},
)
async def recording_audio_url(
    recording_id: str,
    request: Request,
    session: Session,
    principal: Reader,
    settings: Settings,
    format: AudioFormat = "wav",
    ttl_s: Annotated[
        int | None,
        Query(ge=10, le=86400, description="Lifetime (s); ECHODESK_API_RECORDING_URL_TTL_S when unset"),
    ] = None,
) -> RecordingLinkOut:
    """A link to the audio that works without an API key until it expires (for an audio player
    embedded in a helpdesk page). Anyone holding it can play the recording until then."""
    if settings.secret_key is None:
        raise Unavailable("signed links need a secret key: set ECHODESK_SECRET_KEY")
    recording = await _recording(session, principal.tenant_id, recording_id)
    _audio_of(recording, format)  # no link to audio that is not there
    expires = int(datetime.now(UTC).timestamp()) + (ttl_s or settings.recording_url_ttl_s)
    link = RecordingLink(principal.tenant_id, recording.id, format, expires)
    path = request.app.url_path_for(
        "signed_recording_audio", tenant_id=principal.tenant_id, recording_id=recording.id
    )
    query = f"format={format}&expires={expires}&signature={sign(link, settings.secret_key)}"
    base = str(request.base_url).rstrip("/")
    return RecordingLinkOut(
        url=f"{base}{path}?{query}",
        path=f"{path}?{query}",
        format=format,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


@router.get(
    "/v1/signed/recordings/{tenant_id}/{recording_id}/audio",
    name="signed_recording_audio",
    responses={**_AUDIO_RESPONSES, 403: {"description": "The link was altered or has expired"}},
    response_class=Response,
)
async def signed_recording_audio(
    tenant_id: str,
    recording_id: str,
    request: Request,
    session: Session,
    settings: Settings,
    expires: Annotated[int, Query(ge=0, le=2**40, description="Unix time the link expires at")],
    signature: Annotated[str, Query(max_length=100)],
    format: AudioFormat = "wav",
) -> Response:
    """The audio behind a link from ``audio-url``: no API key, the signature is the authority."""
    if settings.secret_key is None:
        raise Unavailable("signed links need a secret key: set ECHODESK_SECRET_KEY")
    try:
        verify(
            RecordingLink(tenant_id, recording_id, format, expires),
            signature,
            settings.secret_key,
            datetime.now(UTC),
        )
    except LinkRefused as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    recording = await _recording(session, tenant_id, recording_id)
    await session.close()
    remaining = max(int(expires - datetime.now(UTC).timestamp()), 0)
    # A browser may keep the audio as long as the link lives, and no shared cache may.
    return await _serve(request, recording, format, f"private, max-age={remaining}")


__all__ = ["router"]
