"""``POST /v1/calls/{call_id}/recording``: pause, resume or stop a live call's recording.

The command goes to the signaling instance holding the call (``calls.command.<node>.recording``,
shared/commands.py); the node is the ``source`` of the call's newest event on the bus, so a call
the call log has not caught up with yet is still found."""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors
from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import ValidationError

from services.api.deps import Writer
from services.api.errors import Unavailable
from services.api.schemas.recording_controls import RecordingAction, RecordingActionDone
from shared import subjects
from shared.bus import Bus, BusError, RemoteError
from shared.commands import CommandAccepted, ControlRecording
from shared.events import CallEnded, RecordingState, parse_event

router = APIRouter(prefix="/v1/calls", tags=["calls"])

#: How long signaling may take (it asks the media worker, which answers within its own 3 s).
COMMAND_TIMEOUT_S = 5.0

_STATE = {"pause": RecordingState.PAUSED, "resume": RecordingState.RECORDING, "stop": RecordingState.STOPPED}
_REFUSALS: dict[str, int] = {
    "call_not_found": status.HTTP_404_NOT_FOUND,
    "not_allowed": status.HTTP_409_CONFLICT,
    "invalid_request": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "media_unavailable": status.HTTP_502_BAD_GATEWAY,
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No call of that id is in progress in the caller's tenant"},
    409: {
        "description": "Not now: the call is not answered or not recorded, the recording is already "
        "in that state, or it was stopped"
    },
    502: {"description": "The call's media worker did not carry it out"},
    503: {"description": "The bus or the call's signaling instance is unreachable"},
}


async def _node(bus: Bus, tenant_id: str, call_id: str) -> str:
    """The signaling instance holding the call: the source of its newest event (404 if it ended)."""
    try:
        message = await bus.js.get_last_msg(
            subjects.CALL_EVENTS.name, subjects.call_events(tenant_id, call_id)
        )
        event = parse_event(message.data or b"")
    except nats.js.errors.NotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no call {call_id} in this tenant") from None
    except ValidationError:
        raise Unavailable(f"the newest event of call {call_id} cannot be read") from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"the bus is unreachable: {exc or type(exc).__name__}") from None
    if isinstance(event, CallEnded):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"call {call_id} has ended")
    try:
        return subjects.token(event.source)
    except ValueError:
        raise Unavailable(f"call {call_id} names no signaling instance") from None


@router.post("/{call_id}/recording", responses=_RESPONSES)
async def control_recording(
    body: RecordingAction,
    request: Request,
    principal: Writer,
    call_id: str = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
) -> RecordingActionDone:
    """Pause (a customer reads a card number: the paused span is silence in the file and listed in
    the recording's metadata), resume, or stop recording for the rest of the call. The call's
    timeline gets ``call.recording``."""
    bus: Bus | None = request.app.state.bus
    if bus is None or not bus.connected:
        raise Unavailable("the api is not connected to the bus")
    node = await _node(bus, principal.tenant_id, call_id)
    command = ControlRecording(
        tenant_id=principal.tenant_id, call_id=call_id, requested_by=principal.key_id, action=body.action
    )
    try:
        accepted = await bus.request(
            subjects.call_command(node, "recording"), command, CommandAccepted, timeout=COMMAND_TIMEOUT_S
        )
    except RemoteError as exc:
        raise HTTPException(_REFUSALS.get(exc.code, status.HTTP_502_BAD_GATEWAY), exc.message) from None
    except BusError as exc:
        raise Unavailable(f"the call's signaling instance did not answer: {exc}") from None
    return RecordingActionDone(call_id=call_id, recording=_STATE[body.action], status=accepted.status)
