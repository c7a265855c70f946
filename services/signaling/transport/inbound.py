"""The one path every received message takes, whatever the transport: parse, answer what is
broken, hand the rest to the core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from services.signaling.sip.errors import SipParseError
from services.signaling.sip.limits import ParseLimits
from services.signaling.sip.message import Request, Response, error_response, parse_message
from services.signaling.transport.endpoint import Endpoint
from services.signaling.transport.flow import Flow, TransportKind
from shared.logging import get_logger

log = get_logger("echodesk.signaling.transport")

RECEIVED = Counter("echodesk_sip_messages_received_total", "SIP messages received", ["transport", "kind"])
MALFORMED = Counter(
    "echodesk_sip_malformed_total", "SIP messages that failed to parse", ["transport", "kind"]
)
# (transport, is a request) -> RECEIVED's child: labels() costs more than the count itself.
_RECEIVED_BY: dict[tuple[TransportKind, bool], Any] = {}


def deliver(
    data: bytes,
    flow: Flow,
    endpoint: Endpoint,
    limits: ParseLimits,
    reply: Callable[[bytes], object],
) -> Request | Response | None:
    """Parse ``data``; on success hand it to ``endpoint``, else answer 400/513 (RFC 3261 21.4.1)
    with the fault as reason phrase, or drop and log a broken response (RFC 3261 18.1.2)."""
    try:
        message = parse_message(data, limits)
    except SipParseError as exc:
        reject(exc, flow, reply)
        return None
    is_request = isinstance(message, Request)
    counter = _RECEIVED_BY.get((flow.transport, is_request))
    if counter is None:
        counter = _RECEIVED_BY[(flow.transport, is_request)] = RECEIVED.labels(
            flow.transport.value, "request" if is_request else "response"
        )
    counter.inc()
    if isinstance(message, Request):
        stamp_received(message, flow)
    endpoint.message_received(message, flow)
    return message


def reject(exc: SipParseError, flow: Flow, reply: Callable[[bytes], object]) -> None:
    kind = {True: "request", False: "response"}.get(exc.is_request, "garbage")  # type: ignore[arg-type]
    MALFORMED.labels(flow.transport.value, kind).inc()
    answer = error_response(exc)
    log.info(
        "malformed SIP message", flow=str(flow), kind=kind, reason=exc.reason, answered=answer is not None
    )
    if answer is not None:
        reply(answer.encode())


def stamp_received(request: Request, flow: Flow) -> None:
    """Record where the request really came from in its top Via, so responses go back through the
    client's NAT binding: ``received`` when the sent-by host differs (RFC 3261 18.2.1); when the client
    asked for ``rport``, its value and ``received`` whatever the host (RFC 3581 4)."""
    via = request.via
    host, port = flow.remote
    params = via.params
    if "rport" in params and params.get("rport") is None:
        stamped = params.with_param("rport", str(port)).with_param("received", host)
        request.set_top_via(via.with_params(stamped))
    elif via.host.strip("[]") != host:
        request.set_top_via(via.with_param("received", host))
