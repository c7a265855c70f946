"""REFER as a blind transfer asks for it (RFC 3515): what the Refer-To names, and the NOTIFYs that
report how the transfer went.

Pure: a REFER in, the text the dial plan routes (or a 4xx with its reason); a dialog and a status
in, the NOTIFY to send. The B2BUA carries the transfer out itself (it is the far end of both legs),
so the transferee never sees the REFER: the customer's leg stays as it is and only the
transferor's leg is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.signaling.sip.address import parse_address
from services.signaling.sip.dialog import Dialog
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.message import Request
from services.signaling.sip.uri import SipUri, unescape

#: RFC 3420: the NOTIFY body is a fragment of the response the new party gave.
SIPFRAG = "message/sipfrag;version=2.0"
#: How long our implicit subscription lasts (RFC 3515 2.4.4: the notifier chooses); a transfer
#: rings for the ring timeout at most, and its last NOTIFY terminates the subscription anyway.
SUBSCRIPTION_S = 60


class ReferError(ValueError):
    """A REFER we answer with a final non-2xx at once: ``status`` and ``reason`` say why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReferTo:
    """What a REFER asks to call: the dialable text (an extension or a number) and the URI."""

    dialed: str
    uri: str


def refer_target(request: Request) -> ReferTo:
    """The one Refer-To of a REFER (RFC 3515 2.1: exactly one, else 400), as the dial plan needs it.

    ``sip:``/``sips:`` URIs give their user part, ``tel:`` its number (RFC 3966); anything else is
    416 (RFC 3261 21.4.14). A Refer-To with ``Replaces`` asks for an attended transfer (RFC 3891),
    which is not built: 501, so the phone can fall back to a blind one or tell its user.
    """
    values = request.headers.get_all("Refer-To")
    if not values:
        raise ReferError(400, "Missing Refer-To header")
    if len(values) > 1:
        raise ReferError(400, "More than one Refer-To header")
    try:
        address = parse_address(values[0].strip())
    except SipParseError:
        raise ReferError(400, "Malformed Refer-To header") from None
    uri = address.uri
    if isinstance(uri, SipUri):
        if any(name.lower() == "replaces" for name, _ in uri.headers):
            raise ReferError(501, "Attended transfer (Refer-To with Replaces) is not supported")
        dialed = unescape(uri.user) if uri.user else ""
    elif uri.scheme.lower() == "tel":
        dialed = uri.rest.split(";", 1)[0]
    else:
        raise ReferError(416, f"Refer-To scheme {uri.scheme}: is not supported")
    # Visual separators of a phone number (RFC 3966 5.1.1) mean nothing to the dial plan.
    dialed = "".join(c for c in dialed if c not in "-.() ")
    if not dialed:
        raise ReferError(400, "Refer-To names no extension or number")
    if len(dialed) > 64:
        raise ReferError(400, "Refer-To number is too long")
    return ReferTo(dialed, str(uri))


def notify(
    dialog: Dialog,
    refer: Request,
    status: int,
    reason: str,
    *,
    via_host: str,
    transport: str,
) -> Request:
    """The NOTIFY of the REFER's implicit subscription (RFC 3515 2.4.4, 2.4.5): the new party's
    status as a sipfrag; a final status (>= 200) terminates the subscription."""
    final = status >= 200
    state = "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_S}"
    # RFC 3515 2.4.6: the id is the REFER's CSeq, telling this transfer's reports from another's.
    headers = (("Event", f"refer;id={refer.cseq.seq}"), ("Subscription-State", state))
    reason_text = " ".join(reason.split())[:120] or "Unknown"
    body = f"SIP/2.0 {status} {reason_text}\r\n".encode()
    return dialog.request(
        "NOTIFY", via_host=via_host, transport=transport, headers=headers, body=body, content_type=SIPFRAG
    )


__all__ = ["SIPFRAG", "ReferError", "ReferTo", "notify", "refer_target"]
