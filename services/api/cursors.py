"""Keyset cursors: an opaque token holding the last row's (time, id), so the next page starts right
after it, by index, however deep the page (no OFFSET scanning)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from services.api.errors import invalid


def encode(at: datetime, row_id: str) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    """The position in ``cursor``; a 422 naming ``cursor`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, row_id = json.loads(raw)
        at = datetime.fromisoformat(at_text)
        if not isinstance(row_id, str) or at.tzinfo is None:
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise invalid(("query", "cursor"), "not a cursor from a previous page", cursor) from None
    return at, row_id
