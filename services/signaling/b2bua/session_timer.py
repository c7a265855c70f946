"""Session timers (RFC 4028) on the carrier leg: the headers, and when to refresh or give up.

Browsers (SIP.js) have no session timers (PEERS.md), but carriers do, and a carrier drops a call whose
refresh went unanswered; a call whose far end vanished without a BYE must not run for ever either.
So the gateway asks for a session interval on its INVITE to the carrier; when the carrier's 2xx
makes us the refresher we re-INVITE at half the interval (section 10), and when the carrier
refreshes we end the call once a refresh is overdue (interval minus min(32 s, interval/3)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: RFC 4028 4: the smallest interval a UA may ask for, and the default Min-SE.
MIN_SE_S = 90
#: A refresh that failed for another reason than 408/481 is tried again this soon (s).
RETRY_S = 10.0

Refresher = Literal["uac", "uas"]


@dataclass(frozen=True, slots=True)
class SessionExpires:
    interval_s: int
    refresher: Refresher | None = None

    def header(self) -> str:
        return f"{self.interval_s};refresher={self.refresher}" if self.refresher else str(self.interval_s)


def parse_session_expires(value: str | None) -> SessionExpires | None:
    """``Session-Expires: 1800;refresher=uac`` (RFC 4028 4); None when absent or malformed."""
    if not value:
        return None
    head, *params = (part.strip() for part in value.split(";"))
    if not head.isdigit() or int(head) <= 0:
        return None
    refresher: Refresher | None = None
    for param in params:
        name, _, found = param.partition("=")
        if name.strip().lower() == "refresher" and found.strip().lower() in ("uac", "uas"):
            refresher = found.strip().lower()  # type: ignore[assignment]
    return SessionExpires(int(head), refresher)


def parse_min_se(value: str | None) -> int | None:
    """``Min-SE: 120`` (RFC 4028 5), parameters ignored."""
    if not value:
        return None
    head = value.split(";")[0].strip()
    return int(head) if head.isdigit() else None


@dataclass(frozen=True, slots=True)
class TooBrief:
    """The INVITE asked for a shorter interval than we accept: answer 422 with ``Min-SE`` (RFC 4028 9)."""

    min_se: int


def uas_session(
    session_expires: str | None, supported: tuple[str, ...], min_se: int = MIN_SE_S
) -> SessionExpires | TooBrief | None:
    """What our 2xx to an INVITE says of the session timer, as its UAS (RFC 4028 9).

    No ``Session-Expires`` in the request: no timer (we could ask for one, but a caller that did not
    is not made to refresh). Shorter than ``min_se``: :class:`TooBrief`. Otherwise the interval
    asked, and the refresher the request named; when it named none, the caller refreshes if it
    supports timers (``Supported: timer``), and we do if it does not (a proxy asked on its behalf;
    the 2xx then carries no ``Require: timer``)."""
    asked = parse_session_expires(session_expires)
    if asked is None:
        return None
    if asked.interval_s < min_se:
        return TooBrief(min_se)
    uac_supports = "timer" in supported
    refresher = asked.refresher or ("uac" if uac_supports else "uas")
    if refresher == "uac" and not uac_supports:
        refresher = "uas"  # a UAC that cannot refresh is not made the refresher
    return SessionExpires(asked.interval_s, refresher)


def refresh_at(now: float, interval_s: int) -> float:
    """When the refresher sends its refresh: half the interval (RFC 4028 10)."""
    return now + interval_s / 2


def expire_at(now: float, interval_s: int) -> float:
    """When the other side gives up on a refresh that did not come (RFC 4028 10)."""
    return now + interval_s - min(32.0, interval_s / 3)


__all__ = [
    "MIN_SE_S",
    "RETRY_S",
    "SessionExpires",
    "TooBrief",
    "expire_at",
    "parse_min_se",
    "parse_session_expires",
    "refresh_at",
    "uas_session",
]
