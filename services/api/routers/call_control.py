"""Call control: ``POST /v1/calls/{call_id}/hangup``, ``/hold``, ``/resume``, ``/dtmf`` and
``/transfer``, sent as commands to the signaling instance holding the call
(services/api/call_commands.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from services.api.call_commands import RESPONSES, call_node, send
from services.api.deps import Session, Writer
from services.api.schemas.call_control import CallCommandOut, DigitsIn, TransferIn
from shared.commands import CallCommand, CommandVerb, HangupCall, HoldCall, SendDigits, TransferCall
from shared.events import TOKEN_PATTERN

router = APIRouter(prefix="/v1/calls", tags=["calls"])

CallId = Annotated[str, Path(pattern=TOKEN_PATTERN, description="The call's id")]


async def _command(
    request: Request, session: Session, tenant_id: str, call_id: str, verb: CommandVerb, command: CallCommand
) -> CallCommandOut:
    node = await call_node(request.app.state.bus, session, tenant_id, call_id)
    await session.close()  # nothing more from the database while signaling works
    accepted = await send(request.app.state.bus, node, verb, command)
    return CallCommandOut(call_id=accepted.call_id, status=accepted.status)


@router.post("/{call_id}/hangup", responses=RESPONSES)
async def hang_up(call_id: CallId, request: Request, session: Session, principal: Writer) -> CallCommandOut:
    """End the call now: CANCEL while it rings, BYE once answered, on every leg. The call ends
    ``ended_by: api`` (``canceled`` before answer, ``completed`` after)."""
    command = HangupCall(tenant_id=principal.tenant_id, call_id=call_id, requested_by=principal.key_id)
    return await _command(request, session, principal.tenant_id, call_id, "hangup", command)


@router.post("/{call_id}/hold", responses=RESPONSES)
async def hold(call_id: CallId, request: Request, session: Session, principal: Writer) -> CallCommandOut:
    """Hold an answered call: the gateway stops relaying audio between the parties (``call.held``)."""
    command = HoldCall(tenant_id=principal.tenant_id, call_id=call_id, requested_by=principal.key_id)
    return await _command(request, session, principal.tenant_id, call_id, "hold", command)


@router.post("/{call_id}/resume", responses=RESPONSES)
async def resume(call_id: CallId, request: Request, session: Session, principal: Writer) -> CallCommandOut:
    """Take a call the api held off hold (``call.resumed``)."""
    command = HoldCall(tenant_id=principal.tenant_id, call_id=call_id, requested_by=principal.key_id)
    return await _command(request, session, principal.tenant_id, call_id, "resume", command)


@router.post("/{call_id}/dtmf", responses=RESPONSES)
async def send_digits(
    call_id: CallId, body: DigitsIn, request: Request, session: Session, principal: Writer
) -> CallCommandOut:
    """Play digits to a party of an answered call as RFC 4733 telephone-events (each on the call's
    timeline as ``call.dtmf`` with ``method: api``)."""
    command = SendDigits(
        tenant_id=principal.tenant_id,
        call_id=call_id,
        requested_by=principal.key_id,
        digits=body.digits,
        duration_ms=body.duration_ms,
        leg=body.leg,
    )
    return await _command(request, session, principal.tenant_id, call_id, "dtmf", command)


@router.post("/{call_id}/transfer", responses=RESPONSES)
async def transfer(
    call_id: CallId, body: TransferIn, request: Request, session: Session, principal: Writer
) -> CallCommandOut:
    """Blind-transfer a customer's call that an agent answered to another agent's extension or to a
    number, routed by the dial plan as that agent's own call would be. Answered once the new party
    rings (``in-progress``); the outcome is on the call's timeline: ``call.transferred`` (the new party
    took it, the agent's leg ended) or ``call.transfer_failed`` (the call stays with the agent). A
    target the dial plan refuses, or nobody registered at the extension, is 409 with the reason."""
    command = TransferCall(
        tenant_id=principal.tenant_id, call_id=call_id, requested_by=principal.key_id, target=body.target
    )
    return await _command(request, session, principal.tenant_id, call_id, "transfer", command)
