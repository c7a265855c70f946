"""Commands to the signaling instance holding a call (``calls.command.<node>.<verb>``,
shared/commands.py), and what their answers mean in HTTP.

The node is the ``source`` of the call's newest event on the bus (CALL_EVENTS keeps the last message
per subject): a call the call log has not caught up with yet is still found, and a call whose
newest event is ``call.ended`` is refused here without asking anyone.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors
from fastapi import HTTPException, status
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import Call
from services.api.errors import Unavailable
from shared import subjects
from shared.bus import Bus, BusError, RemoteError
from shared.commands import CallCommand, CommandAccepted, CommandVerb
from shared.events import CallEnded, parse_event

#: How long signaling may take (it asks the media worker, which answers within its own 3 s).
COMMAND_TIMEOUT_S = 5.0

#: shared.commands.ERROR_CODES as HTTP statuses.
REFUSALS: dict[str, int] = {
    "call_not_found": status.HTTP_404_NOT_FOUND,
    "not_allowed": status.HTTP_409_CONFLICT,
    "invalid_request": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "media_unavailable": status.HTTP_502_BAD_GATEWAY,
}

#: The responses every call-control route documents.
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such call in the caller's tenant"},
    409: {"description": "The call is not in a state for it (ended, not answered, already on hold)"},
    502: {"description": "The call's media worker did not carry it out"},
    503: {"description": "The bus or the call's signaling instance is unreachable"},
}


def _bus(bus: Bus | None) -> Bus:
    if bus is None or not bus.connected:
        raise Unavailable("the api is not connected to the bus: call control needs NATS")
    return bus


async def call_node(bus: Bus | None, session: AsyncSession, tenant_id: str, call_id: str) -> str:
    """The signaling instance holding the call; 404 for a call the tenant never had, 409 for one
    that ended."""
    bus = _bus(bus)
    try:
        message = await bus.js.get_last_msg(
            subjects.CALL_EVENTS.name, subjects.call_events(tenant_id, call_id)
        )
        event = parse_event(message.data or b"")
    except nats.js.errors.NotFoundError:
        # Nothing on the bus (never there, or aged out of the stream): the call log knows the rest.
        logged = await session.get(Call, (tenant_id, call_id))
        if logged is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no call {call_id} in this tenant") from None
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"call {call_id} is {logged.status}: it is no longer in progress"
        ) from None
    except ValidationError:
        raise Unavailable(f"the newest event of call {call_id} cannot be read") from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"the bus is unreachable: {exc or type(exc).__name__}") from None
    if isinstance(event, CallEnded):
        raise HTTPException(status.HTTP_409_CONFLICT, f"call {call_id} has ended ({event.data.status.value})")
    try:
        return subjects.token(event.source)
    except ValueError:
        raise Unavailable(f"call {call_id} names no signaling instance it is on") from None


async def send(bus: Bus | None, node: str, verb: CommandVerb, command: CallCommand) -> CommandAccepted:
    """Send ``command`` to ``node``; a refusal becomes its HTTP status with signaling's reason."""
    bus = _bus(bus)
    try:
        return await bus.request(
            subjects.call_command(node, verb), command, CommandAccepted, timeout=COMMAND_TIMEOUT_S
        )
    except RemoteError as exc:
        raise HTTPException(REFUSALS.get(exc.code, status.HTTP_502_BAD_GATEWAY), exc.message) from None
    except BusError as exc:
        raise Unavailable(
            f"the call's signaling instance ({node}) did not answer: {exc}; the call may be gone with it"
        ) from None
    except nats.errors.Error as exc:
        raise Unavailable(f"the bus is unreachable: {exc or type(exc).__name__}") from None


__all__ = ["COMMAND_TIMEOUT_S", "REFUSALS", "RESPONSES", "call_node", "send"]
