"""``/v1/messages``: send a text message as one of the tenant's agents, or as the tenant itself.

Any signaling instance takes it (``messages.command.send``, shared/messages.py) and sends it as if
the agent's phone had: to a colleague's extension, or to a customer's number through the tenant's
trunks under the same dial plan as calls. The answer says what the sender's phone would hear; the
message's events (``message.sent``, then ``message.delivered`` or ``message.failed``) follow on the
bus, in live events and webhooks, and in the customer's conversation.
"""

from __future__ import annotations

from typing import Annotated, Any

import nats.errors
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field, ValidationError

from services.api.deps import Writer
from services.api.errors import Unavailable, invalid
from shared import subjects
from shared.bus import Bus, BusError, RemoteError
from shared.messages import REFUSED_TARGET, REFUSED_TEXT, UNKNOWN_AGENT, MessageOutcome, SendMessage

router = APIRouter(prefix="/v1/messages", tags=["messages"])

#: Signaling answers within its own wait for the recipient (ECHODESK_SIGNALING_MESSAGE_ANSWER_WAIT_S).
SEND_TIMEOUT_S = 35.0

_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "A field is refused: unknown agent, a destination the dial plan refuses, bad text"},
    503: {"description": "The bus or every signaling instance is unreachable"},
}


class MessageIn(BaseModel):
    agent_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=64,
            description="The agent it is sent as; none: the tenant (to a customer number, from its trunk)",
        ),
    ] = None
    to: Annotated[str, Field(min_length=1, max_length=64, description="An extension or a phone number")]
    text: Annotated[str, Field(min_length=1, max_length=60000, description="UTF-8 text")]


class MessageSentOut(BaseModel):
    message_id: str
    outcome: str = Field(description="delivered, pending (its event will tell) or failed")
    sip_status: int = Field(description="What the recipient (or the gateway) answered")
    reason: str


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=_RESPONSES)
async def send_message(body: MessageIn, request: Request, principal: Writer) -> MessageSentOut:
    """Send ``text`` to ``to`` as agent ``agent_id`` (signaling knows the tenant's enabled agents), or
    without one as the tenant: to a customer's number, from the trunk's caller id."""
    bus: Bus | None = request.app.state.bus
    if bus is None or not bus.connected:
        raise Unavailable("the api is not connected to the bus: sending messages needs NATS")
    try:
        command = SendMessage(
            tenant_id=principal.tenant_id, agent_id=body.agent_id, to=body.to, text=body.text
        )
    except ValidationError:
        raise invalid(("body", "agent_id"), "not an agent id", body.agent_id) from None
    try:
        answer = await bus.request(
            subjects.message_command("send"), command, MessageOutcome, timeout=SEND_TIMEOUT_S
        )
    except RemoteError as exc:
        field = {REFUSED_TARGET: "to", REFUSED_TEXT: "text", UNKNOWN_AGENT: "agent_id"}.get(exc.code)
        if field is None:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, exc.message) from None
        raise invalid(("body", field), exc.message, getattr(body, field)) from None
    except (BusError, nats.errors.Error) as exc:
        raise Unavailable(f"no signaling instance answered: {exc or type(exc).__name__}") from None
    return MessageSentOut(
        message_id=answer.message_id,
        outcome=answer.outcome,
        sip_status=answer.sip_status,
        reason=answer.reason,
    )
