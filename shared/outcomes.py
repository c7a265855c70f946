"""How a call ended, in SIP terms and in words: the old product's "detailed error handling".

Every failed or ended call carries ``sip_status``, ``sip_reason``, a status integrators know
(Twilio's words), a cause for operations, and a message a person reads. The softphone and the
call log show the message; signaling fills it from here so every service says the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import CallStatus, EndCause


@dataclass(frozen=True, slots=True)
class Outcome:
    status: CallStatus
    cause: EndCause
    message: str


#: The old product's messages (issue 5's list), by final SIP status.
_BY_STATUS: dict[int, Outcome] = {
    400: Outcome(CallStatus.FAILED, EndCause.CARRIER_ERROR, "The call request was malformed"),
    401: Outcome(CallStatus.FAILED, EndCause.CARRIER_AUTH_FAILED, "Authentication with the carrier failed"),
    402: Outcome(CallStatus.FAILED, EndCause.FORBIDDEN, "Payment required by the carrier"),
    403: Outcome(CallStatus.FAILED, EndCause.FORBIDDEN, "Call forbidden"),
    404: Outcome(CallStatus.FAILED, EndCause.NOT_FOUND, "Number not found or invalid"),
    407: Outcome(CallStatus.FAILED, EndCause.CARRIER_AUTH_FAILED, "Authentication with the carrier failed"),
    408: Outcome(CallStatus.NO_ANSWER, EndCause.NO_ANSWER, "No answer / Request timeout"),
    410: Outcome(CallStatus.FAILED, EndCause.NOT_FOUND, "Number no longer in service"),
    480: Outcome(CallStatus.FAILED, EndCause.UNAVAILABLE, "Temporarily unavailable"),
    484: Outcome(CallStatus.FAILED, EndCause.NOT_FOUND, "Number incomplete"),
    486: Outcome(CallStatus.BUSY, EndCause.BUSY, "Line busy"),
    487: Outcome(CallStatus.CANCELED, EndCause.CANCELED, "Request terminated"),
    488: Outcome(CallStatus.FAILED, EndCause.NO_COMMON_CODEC, "No common audio codec"),
    500: Outcome(CallStatus.FAILED, EndCause.CARRIER_ERROR, "Carrier error, try again later"),
    502: Outcome(CallStatus.FAILED, EndCause.CARRIER_ERROR, "Carrier error, try again later"),
    503: Outcome(CallStatus.FAILED, EndCause.CARRIER_ERROR, "Carrier error, try again later"),
    504: Outcome(CallStatus.NO_ANSWER, EndCause.CARRIER_ERROR, "The carrier did not answer in time"),
    600: Outcome(CallStatus.BUSY, EndCause.BUSY, "Busy everywhere"),
    603: Outcome(CallStatus.FAILED, EndCause.REJECTED, "Call declined"),
    604: Outcome(CallStatus.FAILED, EndCause.NOT_FOUND, "Number does not exist anywhere"),
    606: Outcome(CallStatus.FAILED, EndCause.NO_COMMON_CODEC, "The call was not acceptable"),
}

_BY_CLASS = {
    3: Outcome(
        CallStatus.FAILED, EndCause.CARRIER_ERROR, "The call was redirected and could not be followed"
    ),
    4: Outcome(CallStatus.FAILED, EndCause.CARRIER_ERROR, "The call could not be completed"),
    5: Outcome(CallStatus.FAILED, EndCause.CARRIER_ERROR, "Carrier error, try again later"),
    6: Outcome(CallStatus.FAILED, EndCause.REJECTED, "The call was refused"),
}


def for_sip_status(status: int) -> Outcome:
    """The outcome of a call that failed with a final ``status`` (300-699)."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    return _BY_CLASS.get(
        status // 100, Outcome(CallStatus.FAILED, EndCause.INTERNAL_ERROR, "The call failed")
    )


#: Outcomes that are not a SIP status from the far end.
_BY_CAUSE: dict[EndCause, Outcome] = {
    EndCause.NORMAL_CLEARING: Outcome(CallStatus.COMPLETED, EndCause.NORMAL_CLEARING, "Call ended"),
    EndCause.CANCELED: Outcome(
        CallStatus.CANCELED, EndCause.CANCELED, "Call canceled before it was answered"
    ),
    EndCause.NO_ANSWER: Outcome(CallStatus.NO_ANSWER, EndCause.NO_ANSWER, "No answer"),
    # An inbound call nobody could be rung for: the helpdesk's "missed call".
    EndCause.UNAVAILABLE: Outcome(
        CallStatus.NO_ANSWER, EndCause.UNAVAILABLE, "No agent was available to take the call"
    ),
    EndCause.MEDIA_TIMEOUT: Outcome(
        CallStatus.COMPLETED, EndCause.MEDIA_TIMEOUT, "Call ended: no audio received"
    ),
    EndCause.MEDIA_FAILURE: Outcome(
        CallStatus.FAILED, EndCause.MEDIA_FAILURE, "Call ended: the media server failed"
    ),
    EndCause.AGENT_CONNECTION_LOST: Outcome(
        CallStatus.COMPLETED, EndCause.AGENT_CONNECTION_LOST, "Call ended: the agent's connection was lost"
    ),
    EndCause.SESSION_TIMER_EXPIRED: Outcome(
        CallStatus.COMPLETED,
        EndCause.SESSION_TIMER_EXPIRED,
        "Call ended: the other side stopped confirming it",
    ),
    EndCause.TRANSFERRED: Outcome(CallStatus.COMPLETED, EndCause.TRANSFERRED, "Call transferred"),
    EndCause.TRANSFER_FAILED: Outcome(
        CallStatus.COMPLETED, EndCause.TRANSFER_FAILED, "Call ended: the transfer reached nobody"
    ),
    EndCause.SYSTEM_SHUTDOWN: Outcome(
        CallStatus.FAILED, EndCause.SYSTEM_SHUTDOWN, "Call ended: service restarting"
    ),
    EndCause.SIGNALING_RESTARTED: Outcome(
        CallStatus.FAILED,
        EndCause.SIGNALING_RESTARTED,
        "Call ended: the gateway restarted before the call was answered",
    ),
    EndCause.INTERNAL_ERROR: Outcome(
        CallStatus.FAILED, EndCause.INTERNAL_ERROR, "Call failed: internal error"
    ),
}


def for_cause(cause: EndCause, detail: str | None = None) -> Outcome:
    """The outcome of a call that ended for ``cause``; ``detail`` completes a dial-plan refusal."""
    if cause is EndCause.DIALPLAN_REFUSED:
        return Outcome(
            CallStatus.FAILED, cause, f"Call not allowed: {detail}" if detail else "Call not allowed"
        )
    found = _BY_CAUSE.get(cause)
    if found is not None:
        return found
    return Outcome(CallStatus.FAILED, cause, cause.value.replace("_", " ").capitalize())


def sip_status_outcomes() -> list[tuple[int, Outcome]]:
    """Every final status with an outcome of its own, in order (the softphone's message table)."""
    return sorted(_BY_STATUS.items())


def sip_class_outcomes() -> list[tuple[int, Outcome]]:
    """The outcome of each class (3 to 6) for a status not in :func:`sip_status_outcomes`."""
    return sorted(_BY_CLASS.items())
