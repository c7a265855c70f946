"""One customer's conversation with one tenant: the id that threads their calls and messages.

The id is derived, never stored: a UUIDv5 (RFC 9562 5.5) of the tenant and the customer's E.164
number, so signaling, the api and an integrator all compute the same one without asking anyone,
and a number's calls and texts from before and after a restart land on the same timeline.
"""

from __future__ import annotations

import re
import uuid

from shared.events import CallCreated, Direction, EventEnvelope

#: The namespace of conversation ids (a fixed random UUID: ids are stable across releases).
CONVERSATION_NAMESPACE = uuid.UUID("5d0b6c1e-2f43-4e0a-9a57-1f3b8e6c2a90")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def conversation_id(tenant_id: str, number: str) -> uuid.UUID | None:
    """The conversation of ``number`` (E.164) in ``tenant_id``; None when it is no phone number
    (an extension, ``anonymous``): such a party has no conversation to thread."""
    if not _E164.match(number):
        return None
    return uuid.uuid5(CONVERSATION_NAMESPACE, f"{tenant_id}\x1f{number}")


def threaded(event: EventEnvelope) -> EventEnvelope:
    """``event`` with its conversation: a ``call.created`` of a call with a customer gets the
    customer's conversation_id (the caller of an inbound call, the number called of an outbound
    one); every other event is returned as it is."""
    if not isinstance(event, CallCreated) or event.data.conversation_id is not None:
        return event
    data = event.data
    if data.direction is Direction.INBOUND:
        number = data.from_number
    elif data.direction is Direction.OUTBOUND:
        number = data.to_number
    else:
        return event
    conversation = conversation_id(event.tenant_id, number)
    if conversation is None:
        return event
    return event.model_copy(update={"data": data.model_copy(update={"conversation_id": conversation})})


__all__ = ["CONVERSATION_NAMESPACE", "conversation_id", "threaded"]
