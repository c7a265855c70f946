"""What a transport hands messages to: the SIP core, seen from the transports."""

from __future__ import annotations

from typing import Protocol

from services.signaling.sip.message import Request, Response
from services.signaling.transport.flow import Flow


class Endpoint(Protocol):
    def message_received(self, message: Request | Response, flow: Flow) -> None:
        """A whole, parsed message arrived on ``flow``."""

    def flow_closed(self, flow: Flow) -> None:
        """A connection went away: whatever was bound to it (registrations, dialogs) must be ended."""
