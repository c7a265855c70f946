"""The api's request to send a text message as an agent (``messages.command.send``), served by any
signaling instance, and its answer. The message itself then lives on the bus as its events
(``message.sent``, then ``message.delivered`` or ``message.failed``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events import ContractModel, Token

#: Error codes of the answer (shared.bus.Rejected): what the api turns into a 422 naming a field.
REFUSED_TARGET = "refused_target"
REFUSED_TEXT = "refused_text"
UNKNOWN_AGENT = "unknown_agent"


class SendMessage(ContractModel):
    tenant_id: Token
    #: The agent it is sent as; None: the tenant itself (to a customer's number, from its trunk).
    agent_id: Token | None = None
    #: An extension or a phone number, as an agent would write it (the dial plan reads it).
    to: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=60000)


class MessageOutcome(ContractModel):
    message_id: Token
    #: delivered: a phone or the carrier accepted it; pending: it waits (the agent is not registered,
    #: or the outcome is not known yet) and its event will tell; failed: refused by the recipient.
    outcome: Literal["delivered", "pending", "failed"]
    sip_status: int = Field(ge=200, le=699)
    reason: str = Field(max_length=200)


__all__ = ["REFUSED_TARGET", "REFUSED_TEXT", "UNKNOWN_AGENT", "MessageOutcome", "SendMessage"]
