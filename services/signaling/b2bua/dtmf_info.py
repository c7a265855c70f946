"""DTMF carried in SIP INFO bodies, as SIP.js and many desk phones send it.

Two de-facto formats, neither an RFC (RFC 6086 leaves INFO packages to their definers):
``application/dtmf-relay`` (Cisco's, ``Signal=5`` and ``Duration=160`` lines) and ``application/dtmf``
(the digit alone). The gateway plays what it reads to the other end as RFC 4733 events.
"""

from __future__ import annotations

#: RFC 4733 section 3.2 events 0-15, as keys: 10 is *, 11 is #, 12-15 are A-D.
_DIGITS = "0123456789*#ABCD"
DEFAULT_DURATION_MS = 160
MIN_DURATION_MS, MAX_DURATION_MS = 40, 2000
#: Bodies longer than this are not a digit.
_MAX_BODY = 256


def dtmf_from_info(content_type: str | None, body: bytes) -> tuple[str, int]:
    """(digit, duration in ms) from an INFO body; ValueError with a reason a 400/415 can carry."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in ("application/dtmf-relay", "application/dtmf"):
        raise ValueError(
            f"unsupported content type {kind or 'none'}: want application/dtmf-relay or application/dtmf"
        )
    if len(body) > _MAX_BODY:
        raise ValueError("the DTMF body is too long")
    text = body.decode("ascii", "replace").strip()
    if kind == "application/dtmf":
        return _digit(text), DEFAULT_DURATION_MS
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, separator, value = line.partition("=")
        if separator:
            fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise ValueError("no Signal= line in the dtmf-relay body")
    duration = DEFAULT_DURATION_MS
    if "duration" in fields:
        try:
            duration = int(fields["duration"])
        except ValueError:
            raise ValueError(f"Duration={fields['duration']!r} is not a number") from None
    return _digit(fields["signal"]), max(MIN_DURATION_MS, min(MAX_DURATION_MS, duration))


def _digit(text: str) -> str:
    value = text.strip().upper()
    if len(value) == 2 and value.isdigit() and 10 <= int(value) < len(_DIGITS):
        return _DIGITS[int(value)]  # some phones send the RFC 4733 event number (10 for *)
    if len(value) == 1 and value in _DIGITS:
        return value
    raise ValueError(f"{text[:20]!r} is not a DTMF digit")


__all__ = ["dtmf_from_info"]
