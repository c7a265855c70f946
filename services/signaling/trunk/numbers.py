"""The numbers in a carrier's request: which of a trunk's numbers (DIDs) it is for, and who the
customer is, both in E.164 (normalized with the trunk's region) as agents and events see them."""

from __future__ import annotations

from services.signaling.sip.message import Request
from services.signaling.sip.uri import SipUri
from shared.numbers import NumberError, normalize
from shared.records import TrunkRecord


def _e164(raw: str, region: str) -> str | None:
    try:
        number = normalize(raw, region)
    except NumberError:
        return None
    return number.number if number.is_phone_number else None


def called_number(request: Request, carriers: list[TrunkRecord]) -> tuple[TrunkRecord, str] | None:
    """Which trunk and which of its numbers a carrier's request (an INVITE, a MESSAGE) is for.

    Carriers put the number called either in the Request-URI or, when they call the Contact we
    registered, only in To. A number is ours when it is one of the trunk's DIDs; a call to the
    registered Contact is the trunk's whatever the number; a trunk that lists no DIDs takes
    everything its carrier sends.
    """
    uri, to_uri = request.uri, request.to.uri
    candidates = [u.user for u in (uri, to_uri) if isinstance(u, SipUri) and u.user]
    for trunk in carriers:
        dids = {n for did in trunk.dids if (n := _e164(did, trunk.default_region))}
        for raw in candidates:
            number = _e164(raw, trunk.default_region)
            if number is not None and number in dids:
                return trunk, number
    uri_user = uri.user if isinstance(uri, SipUri) else None
    for trunk in carriers:
        if (trunk.username and uri_user == trunk.username) or not trunk.dids:
            dialed = next(
                (n for raw in reversed(candidates) if (n := _e164(raw, trunk.default_region))), None
            )
            return trunk, dialed or (trunk.dids[0] if trunk.dids else (candidates[-1] if candidates else "?"))
    return None


def caller_number(request: Request, trunk: TrunkRecord) -> str:
    """The customer's number as the agent and the events see it: E.164 where it is one (RFC 3261
    20.20 From), ``anonymous`` for a withheld number."""
    uri = request.from_.uri
    user = uri.user if isinstance(uri, SipUri) and uri.user else ""
    if not user or user.lower() in ("anonymous", "unknown", "restricted"):
        return "anonymous"
    return _e164(user, trunk.default_region) or user[:64]


__all__ = ["called_number", "caller_number"]
