"""Commands the api sends to the signaling instance that holds a call (request/reply on NATS).

Subjects: ``calls.command.<node>.<verb>`` (:func:`shared.subjects.call_command`), where ``node`` is
the ``source`` of the call's events: the instance that owns the call. Verbs and their bodies:
``hangup`` (:class:`HangupCall`), ``hold`` and ``resume`` (:class:`HoldCall`), ``dtmf``
(:class:`SendDigits`), ``recording`` (:class:`ControlRecording`), ``transfer`` (:class:`TransferCall`).
Every success is a :class:`CommandAccepted`; a refusal is a typed error
(shared.bus RemoteError) with one of :data:`ERROR_CODES`, whose message says why in words an
administrator reads (the state the call is in, the rule broken).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events import CallStatus, ContractModel, LegKind, Token

#: ``call_not_found``: no call of that id on this node (ended, or never here);
#: ``not_allowed``: the call's state does not allow it (e.g. hold before answer);
#: ``media_unavailable``: the call's media worker did not do it.
ERROR_CODES = ("call_not_found", "not_allowed", "media_unavailable", "invalid_request")

CommandVerb = Literal["hangup", "hold", "resume", "dtmf", "recording", "transfer"]


class CallCommand(ContractModel):
    tenant_id: Token
    call_id: Token
    #: Who asked (an API key id or a user), for the logs.
    requested_by: str | None = Field(default=None, max_length=128)


class HangupCall(CallCommand):
    """End the call now: CANCEL or BYE on every leg; the call ends ``ended_by: api``."""


class HoldCall(CallCommand):
    """Hold (or resume) both parties: the gateway stops relaying audio between them."""


class SendDigits(CallCommand):
    """Play digits as RFC 4733 events towards a leg (the customer by default: an IVR to navigate)."""

    digits: str = Field(pattern=r"^[0-9*#A-D]{1,32}$")
    duration_ms: int = Field(default=160, ge=40, le=2000)
    leg: LegKind = LegKind.CUSTOMER


class ControlRecording(CallCommand):
    """Pause, resume or stop a recorded call's recording (an agent pauses while a customer reads a
    card number). Paused audio never leaves the media worker; ``stop`` pauses for the rest of the
    call and cannot be undone; the call's timeline gets ``call.recording``."""

    action: Literal["pause", "resume", "stop"]


class TransferCall(CallCommand):
    """Blind transfer of an answered call to ``target`` (an extension, or a number routed by the dial
    plan exactly as the answering agent's own call to it would be). Accepted once the new party's
    phones ring (status ``in-progress``); the outcome is ``call.transferred`` (the new party took the
    call and the agent's leg ended) or ``call.transfer_failed`` (the call goes on with the agent). A
    target the dial plan refuses, or nobody registered there, is refused at once (``not_allowed``)."""

    target: str = Field(pattern=r"^\+?[0-9*#]{1,32}$")


class CommandAccepted(ContractModel):
    call_id: Token
    #: The call's status once the command was carried out.
    status: CallStatus


#: Each verb's request body (the reply is always :class:`CommandAccepted` or a typed error).
COMMANDS: dict[CommandVerb, type[CallCommand]] = {
    "hangup": HangupCall,
    "hold": HoldCall,
    "resume": HoldCall,
    "dtmf": SendDigits,
    "recording": ControlRecording,
    "transfer": TransferCall,
}


__all__ = [
    "COMMANDS",
    "ERROR_CODES",
    "CallCommand",
    "CommandAccepted",
    "CommandVerb",
    "ControlRecording",
    "HangupCall",
    "HoldCall",
    "SendDigits",
    "TransferCall",
]
