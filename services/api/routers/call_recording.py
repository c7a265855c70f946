"""``POST /v1/calls/{call_id}/recording``: pause, resume or stop a live call's recording.

The command goes to the signaling instance holding the call (``calls.command.<node>.recording``,
shared/commands.py), found and asked as every call-control command is (services/api/call_commands.py)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from services.api.call_commands import RESPONSES, call_node, send
from services.api.deps import Session, Writer
from services.api.schemas.recording_controls import RecordingAction, RecordingActionDone
from shared.commands import ControlRecording
from shared.events import RecordingState

router = APIRouter(prefix="/v1/calls", tags=["calls"])

_STATE = {"pause": RecordingState.PAUSED, "resume": RecordingState.RECORDING, "stop": RecordingState.STOPPED}
_RESPONSES = {
    **RESPONSES,
    409: {
        "description": "Not now: the call ended or is not answered, is not recorded, the recording is "
        "already in that state, or it was stopped"
    },
}


@router.post("/{call_id}/recording", responses=_RESPONSES)
async def control_recording(
    body: RecordingAction,
    request: Request,
    session: Session,
    principal: Writer,
    call_id: str = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
) -> RecordingActionDone:
    """Pause (a customer reads a card number: the paused span is silence in the file and listed in
    the recording's metadata), resume, or stop recording for the rest of the call. The call's
    timeline gets ``call.recording``."""
    node = await call_node(request.app.state.bus, session, principal.tenant_id, call_id)
    await session.close()
    command = ControlRecording(
        tenant_id=principal.tenant_id, call_id=call_id, requested_by=principal.key_id, action=body.action
    )
    accepted = await send(request.app.state.bus, node, "recording", command)
    return RecordingActionDone(call_id=call_id, recording=_STATE[body.action], status=accepted.status)
