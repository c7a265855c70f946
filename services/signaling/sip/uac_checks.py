"""Checks a UAC makes on a response before its transaction sees it (RFC 3261 8.1.3.3)."""

from __future__ import annotations

from services.signaling.sip.message import SIP_2_0, Response


def check_response(response: Response) -> str | None:
    """Why ``response`` should be dropped, or None when it may be processed.

    A UAC sent its request with one Via, so a response with more than one was not meant for it
    (RFC 3261 8.1.3.3); forwarding it on, as RFC 4475 3.3.10 shows with a broadcast second Via,
    would be an attack vector. A version we do not speak is dropped too (RFC 3261 7.1).
    """
    if response.version != SIP_2_0:
        return "Unsupported SIP version"
    if len(response.vias) > 1:
        return "More than one Via in a response"
    return None
