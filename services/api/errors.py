"""Error responses: every 4xx names what is wrong in words, and every 422 names the field.

A 422 keeps FastAPI's shape (``detail`` is a list of ``{loc, msg, type}``) and adds ``field``, the
path a person reads (``dids[2]``, ``number``). Checks made by the routers (a DID that does not
normalize, a default trunk that may not be un-defaulted) raise the same error as pydantic does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from shared.logging import get_logger

log = get_logger("echodesk.api")


def field_path(loc: Sequence[int | str]) -> str:
    """``("body", "dids", 2)`` -> ``dids[2]``; the request part (body, query, path) is left out."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header") and len(parts) > 1:
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def invalid(loc: tuple[int | str, ...], message: str, value: Any = None) -> RequestValidationError:
    """A 422 for one field, in the same shape pydantic's errors have."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message, "input": value}])


class Conflict(Exception):
    """409: the request is valid but clashes with what exists (a taken extension, a name in use)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Unavailable(Exception):
    """503: the api is not configured for this request (no secret key to seal a password)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_failed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():
            item = {k: v for k, v in error.items() if k != "ctx" or _plain(v)}
            if "input" in item:
                item["input"] = _redacted(error.get("loc", ()), item["input"])
            item["field"] = field_path(error.get("loc", ()))
            errors.append(_renderable(jsonable_encoder(item)))
        return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(Conflict)
    async def conflict(_request: Request, exc: Conflict) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.message}
        if exc.field is not None:
            body["field"] = exc.field
        return JSONResponse(body, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(IntegrityError)
    async def integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        # The routers check what they can first; this is the race they cannot see (two requests
        # taking the same name at once), which the database's constraints settle.
        log.info("request refused by a database constraint", error=str(exc.orig)[:300])
        return JSONResponse(
            {"detail": "conflicts with a change made at the same time; try again"},
            status_code=status.HTTP_409_CONFLICT,
        )

    @app.exception_handler(StaleDataError)
    async def stale(_request: Request, _exc: StaleDataError) -> JSONResponse:
        return JSONResponse(
            {"detail": "changed by another request at the same time; read it again and retry"},
            status_code=status.HTTP_409_CONFLICT,
        )

    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


#: Write-only fields: a 422 never echoes what was sent in them.
SECRET_FIELDS = frozenset({"password", "turn_password", "secret"})
_REDACTED = "**********"


def _redacted(loc: Sequence[int | str], value: Any) -> Any:
    if any(part in SECRET_FIELDS for part in loc):
        return _REDACTED
    if isinstance(value, dict):
        return {k: _REDACTED if k in SECRET_FIELDS else v for k, v in value.items()}
    return value


def _renderable(item: dict[str, Any]) -> dict[str, Any]:
    """The error as JSON can carry it: an ``input`` holding NaN or a lone surrogate (both valid in
    what Python's JSON parser accepts) is echoed as its repr instead of failing the response."""
    try:
        json.dumps(item, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        item = {**item, "input": ascii(item.get("input"))[:200]}
        item["msg"] = ascii(item.get("msg", ""))[1:-1] if not _utf8(str(item.get("msg", ""))) else item["msg"]
    return item


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain(value: object) -> bool:
    """pydantic's ``ctx`` may hold an exception object; keep it only when it serializes as is."""
    return isinstance(value, dict) and all(isinstance(v, str | int | float | bool) for v in value.values())
