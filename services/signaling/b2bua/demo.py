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
from typing import ClassVar

from services.signaling.b2bua.call import EchoCall
from shared.media import SessionKind


@dataclass(kw_only=True)
class DemoCall(EchoCall):
    """An agent's call to the demo line: the echo line's call with an announcement for media."""

    line: str = "*44"
    session_kind: ClassVar[SessionKind] = SessionKind.ANNOUNCEMENT


__all__ = ["DemoCall"]
