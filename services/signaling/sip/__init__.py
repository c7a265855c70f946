"""SIP stack (RFC 3261): one module per protocol object.

The message layer is sans-I/O: bytes in, objects out (RFC 3261 7, 19, 20, 25). Nothing here touches
a socket, a clock or an event loop. Transports hand bytes to ``parse_message`` (through a
``StreamFramer`` first on TCP and TLS) and send what ``Message.encode`` returns.
"""

from services.signaling.sip.address import STAR, Address, parse_address, parse_contacts
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.framing import FramingError, KeepAlivePing, MessageFrame, StreamFramer
from services.signaling.sip.headers import COMPACT_FORMS, CSeq, Headers, canonical_name, split_list
from services.signaling.sip.limits import DEFAULT_LIMITS, ParseLimits
from services.signaling.sip.message import (
    REASON_PHRASES,
    Message,
    Request,
    Response,
    error_response,
    make_response,
    new_tag,
    parse_message,
)
from services.signaling.sip.parameters import Parameters, UriParameters
from services.signaling.sip.uac_checks import check_response
from services.signaling.sip.uas_checks import check_request
from services.signaling.sip.uri import AbsoluteUri, SipUri, parse_uri
from services.signaling.sip.via import Via, parse_via

__all__ = [
    "COMPACT_FORMS",
    "DEFAULT_LIMITS",
    "REASON_PHRASES",
    "STAR",
    "AbsoluteUri",
    "Address",
    "CSeq",
    "FramingError",
    "Headers",
    "KeepAlivePing",
    "Message",
    "MessageFrame",
    "Parameters",
    "ParseLimits",
    "Request",
    "Response",
    "SipParseError",
    "SipUri",
    "StreamFramer",
    "UriParameters",
    "Via",
    "canonical_name",
    "check_request",
    "check_response",
    "error_response",
    "make_response",
    "new_tag",
    "parse_address",
    "parse_contacts",
    "parse_message",
    "parse_uri",
    "parse_via",
    "split_list",
]
