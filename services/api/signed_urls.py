"""Short-lived signed download links of recordings: a helpdesk embeds an audio player without
giving the browser an API key.

A link names the tenant, the recording, the format and when it expires; its ``signature`` is an
HMAC-SHA256 of exactly those, keyed by a key derived from the api's secret key (so the secret
that seals trunk passwords is never used as is for another purpose). Nothing is stored: any api
instance with the same secret key checks any link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime


class LinkRefused(Exception):
    """403: the link was altered, signed with another key, or has expired; the message says which."""


@dataclass(frozen=True)
class RecordingLink:
    tenant_id: str
    recording_id: str
    format: str
    #: Unix time (s) after which the link is refused.
    expires: int

    def message(self) -> bytes:
        # A JSON array: parts cannot run into each other, whatever a tampered link puts in them.
        parts = ["recording-audio", self.tenant_id, self.recording_id, self.format, self.expires]
        return json.dumps(parts).encode()


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"echodesk signed recording links", hashlib.sha256).digest()


def sign(link: RecordingLink, secret_key: str) -> str:
    digest = hmac.new(_key(secret_key), link.message(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(link: RecordingLink, signature: str, secret_key: str, now: datetime) -> None:
    """Raise :class:`LinkRefused` unless ``signature`` is this link's and it has not expired.

    The signature is checked first, in constant time: an altered ``expires`` is "does not match",
    never "expired", so the reason cannot be used to probe which parts were changed."""
    expected = sign(link, secret_key)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise LinkRefused(
            "the link's signature does not match: it was altered, or made by an api with another secret key"
        )
    if now.timestamp() > link.expires:
        expired = datetime.fromtimestamp(link.expires, UTC).isoformat()
        raise LinkRefused(f"the link expired at {expired}; ask the API for a new one")


__all__ = ["LinkRefused", "RecordingLink", "sign", "verify"]
