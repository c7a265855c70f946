"""The demo line (``*44`` by default): answered at once, it plays a short announcement.

With the echo line it lets a newcomer try the gateway without any carrier (ARCHITECTURE.md,
"Running it"; issue 5, "Built-in lines"): the media worker opens an ``announcement`` session on the
agent's offer (a browser's WebRTC or a desk phone's plain RTP) and plays its prompt towards the agent,
repeating it until the call ends. The call itself behaves as the echo line's does: 200 with the
worker's answer as soon as the session exists, ``call.created``, ``call.answered``, ``call.ended``,
and a BYE from the agent ends it; only the kind of session differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.signaling.b2bua.call import AnswerCaller, Command, EchoCall, Publish, StartMedia
from shared.events import CallCreated, CallCreatedData, CallStatus, Direction
from shared.media import CreateSession, SessionKind


@dataclass(kw_only=True)
class DemoCall(EchoCall):
    """An agent's call to the demo line: the echo line's call with an announcement for media."""

    line: str = "*44"

    def start(self, now: float) -> list[Command]:
        self.created_at = now
        created = CallCreated(
            **self._envelope(),
            data=CallCreatedData(
                direction=Direction.INTERNAL,
                from_number=self.agent_extension,
                to_number=self.line,
                agent_id=self.agent_id,
                status=CallStatus.INITIATED,
                recorded=self.record,
            ),
        )
        session = CreateSession(
            tenant_id=self.tenant_id,
            call_id=self.call_id,
            kind=SessionKind.ANNOUNCEMENT,
            agent_offer=self.agent_invite.body.decode("utf-8", "replace") or None,
            record=self.record,
        )
        return [AnswerCaller(self._agent_response(100)), Publish(created), StartMedia(session)]


__all__ = ["DemoCall"]
