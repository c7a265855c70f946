"""How message events build a message's row (services/api/db/messages.py).

``message.sent``/``received`` say what was said and between whom; ``message.delivered``/``failed``
say how it ended. An outcome can be applied before its message (another batch, another replica):
the row is made from whichever comes first and completed by the other, and an outcome is never
undone by a late ``sent``.
"""

from __future__ import annotations

from datetime import datetime

from services.api.db.base import utcnow
from services.api.db.messages import Message
from shared.events import MessageDelivered, MessageEvent, MessageFailed, MessageReceived, MessageSent

FINAL = frozenset({"delivered", "failed"})


def new_message(tenant_id: str, message_id: str, at: datetime) -> Message:
    return Message(tenant_id=tenant_id, id=message_id, status="sent", accepted_at=at, queued=False)


def apply_message_event(row: Message, event: MessageEvent) -> None:
    if event.customer_number is not None:
        row.customer_number = event.customer_number
    if event.conversation_id is not None:
        row.conversation_id = str(event.conversation_id)
    if isinstance(event, MessageSent | MessageReceived):
        data = event.data
        row.direction = data.direction.value
        row.from_number = data.from_number
        row.to_number = data.to_number
        row.from_agent_id = data.from_agent_id
        row.to_agent_id = data.to_agent_id
        row.trunk_id = data.trunk_id
        row.content_type = data.content_type
        row.text = data.text
        row.size_bytes = data.size_bytes
        row.accepted_at = event.occurred_at
        if isinstance(event, MessageSent):
            row.agent_id = event.agent_id  # the sender, whatever an outcome said before
        if row.status not in FINAL:
            row.status = "received" if isinstance(event, MessageReceived) else "sent"
    elif isinstance(event, MessageDelivered):
        row.status = "delivered"
        row.delivered_at = event.occurred_at
        row.queued = event.data.queued
        row.sip_status = event.data.sip_status
        if event.agent_id is not None and row.direction in (None, "inbound"):
            row.agent_id = event.agent_id  # the agent who got the customer's message
    elif isinstance(event, MessageFailed) and row.status != "delivered":
        row.status = "failed"
        row.failed_at = event.occurred_at
        row.failure_cause = event.data.cause.value
        row.sip_status = event.data.sip_status
        row.reason = event.data.reason
    row.updated_at = utcnow()


__all__ = ["apply_message_event", "new_message"]
