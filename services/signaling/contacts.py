"""The helpdesk's contact ids of customer numbers, mirrored from the api's KV bucket ``contacts``,
and put on every later call and message event for those numbers.

A call's events name its customer only in ``call.created`` (the caller of an inbound call, the
number called of an outbound one), so the link is looked up there and remembered for the call's
later events until ``call.ended``; a message event names its customer itself. A link changed during
a call applies from that call's next event on. A record that does not validate is logged and
ignored, never half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.events import (
    CallCreated,
    CallEnded,
    CallEventEnvelope,
    Direction,
    EventEnvelope,
    MessageEventEnvelope,
    RecordingCompleted,
    RecordingCompressed,
    RecordingDeleted,
    RecordingFailed,
    RecordingStarted,
)
from shared.logging import get_logger
from shared.records import ContactLink, contact_key

log = get_logger("echodesk.signaling.contacts")

#: Events of recordings come from the recorders, never through here.
_RECORDING = (RecordingStarted, RecordingCompleted, RecordingCompressed, RecordingDeleted, RecordingFailed)


@dataclass
class ContactDirectory:
    _links: dict[str, str] = field(default_factory=dict)
    #: Calls in progress with a customer: call id -> (tenant, E.164).
    _calls: dict[str, tuple[str, str]] = field(default_factory=dict)

    def apply(self, key: str, value: bytes | None) -> None:
        """Apply one KV change (the watcher calls this with each, and the whole bucket at start-up)."""
        if value is None:
            self._links.pop(key, None)
            return
        try:
            link = ContactLink.model_validate_json(value)
        except ValidationError as exc:
            log.error("invalid contact link ignored", key=key, error=str(exc).splitlines()[0])
            return
        if contact_key(link.tenant_id, link.number) != key:
            log.error("contact link under the wrong key ignored", key=key)
            return
        self._links[key] = link.contact_id

    def contact_of(self, tenant_id: str, number: str) -> str | None:
        return self._links.get(contact_key(tenant_id, number))

    def tag(self, event: EventEnvelope) -> EventEnvelope:
        """``event`` with the contact id of its customer's number, when the number has one."""
        if isinstance(event, MessageEventEnvelope):
            if event.customer_number is None or event.contact_id is not None:
                return event
            contact = self.contact_of(event.tenant_id, event.customer_number)
            return event if contact is None else event.model_copy(update={"contact_id": contact})
        if not isinstance(event, CallEventEnvelope) or isinstance(event, _RECORDING):
            return event
        if isinstance(event, CallCreated):
            number = _customer(event)
            if number is not None:
                self._calls[event.call_id] = (event.tenant_id, number)
        known = self._calls.get(event.call_id)
        if isinstance(event, CallEnded):
            self._calls.pop(event.call_id, None)
        if known is None or event.contact_id is not None:
            return event
        contact = self.contact_of(*known)
        return event if contact is None else event.model_copy(update={"contact_id": contact})

    def __len__(self) -> int:
        return len(self._links)


def _customer(event: CallCreated) -> str | None:
    data = event.data
    if data.direction is Direction.INBOUND:
        number = data.from_number
    elif data.direction is Direction.OUTBOUND:
        number = data.to_number
    else:
        return None
    return number if number.startswith("+") else None


__all__ = ["ContactDirectory"]
