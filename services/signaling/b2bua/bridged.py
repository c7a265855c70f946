"""A connected call taken over from a signaling instance that died, as a sans-I/O state machine.

Whatever kind of call it was (an agent's call out through a trunk, a customer's call an agent
answered, a call between agents, the echo or demo line), once connected it is two dialogs bridged by
one media session: that is what the previous instance left in KV ``calls`` (b2bua/snapshot.py) and
what this class carries on. Each end has its dialog (RFC 3261 12: Call-ID, tags, CSeqs, route set,
remote target), how we appear to it and its leg of the media session; the echo and demo lines have
one end only (the worker is the other). In-dialog requests work as on the original call: a BYE from
one end is passed to the other, re-INVITE and UPDATE go to that end's media leg, INFO digits are
played to the other leg, the api can hang up, hold, resume and send digits. A session timer the
original call ran on the callee's end (RFC 4028) runs on from where it stood.

What is not carried over is what a connected call does only in passing: a blind transfer in
progress (the transferor's REFER is answered again from scratch), and transferring the call later
(REFER gets 501 with a reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.signaling.b2bua.call import (
    Call,
    Command,
    LegAddress,
    Phase,
    SendToBranch,
    SendToCaller,
    Side,
    StartTimer,
    StopMedia,
)
from services.signaling.b2bua.session_timer import (
    RETRY_S,
    SessionExpires,
    expire_at,
    parse_min_se,
    parse_session_expires,
    refresh_at,
)
from services.signaling.sip.dialog import Dialog, DialogState
from services.signaling.sip.message import Request, Response
from shared.events import EndCause, LegKind, Party
from shared.media import SessionCreated
from shared.outcomes import for_cause

SDP = "application/sdp"
#: The callee's flow is the call's first (and only) "branch" in the glue (b2bua/calls.py).
CALLEE = 0


@dataclass(slots=True)
class End:
    """One end of the bridged call."""

    dialog: Dialog
    address: LegAddress
    media_leg: LegKind
    party: Party
    agent_id: str | None = None
    #: Our SDP towards this end, offered again unchanged by a session refresh (RFC 3264 8).
    offer: bytes = b""


@dataclass(kw_only=True)
class BridgedCall(Call):
    caller: End
    #: None for the echo and demo lines: the media worker is the other end.
    callee: End | None = None
    media_key: str = "main"
    trunk: str | None = None
    #: RFC 4028 on the callee's end: the interval, who refreshes ("uac": us), timers' due times.
    session: SessionExpires | None = None
    due: dict[str, float] = field(default_factory=dict)
    _refresh: Request | None = None

    def __post_init__(self) -> None:
        self.phase = Phase.CONNECTED

    @property
    def caller_call_id(self) -> str:
        return self.caller.dialog.call_id

    @property
    def caller_tag(self) -> str:
        return self.caller.dialog.local_tag

    @property
    def trunk_id(self) -> str | None:
        return self.trunk

    @property
    def agent_ids(self) -> tuple[str, ...]:
        ends = (self.caller, self.callee)
        return tuple(dict.fromkeys(e.agent_id for e in ends if e is not None and e.agent_id is not None))

    def _dialogs(self) -> tuple[Dialog | None, ...]:
        return (self.caller.dialog, self.callee.dialog if self.callee is not None else None)

    # --- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> list[Command]:
        """Taken over: the session timers that were running are armed again (those overdue fire now)."""
        return [StartTimer(name, max(at, now)) for name, at in self.due.items()]

    def media_ready(self, created: SessionCreated, now: float, key: str = "main") -> list[Command]:
        return [StopMedia("the call no longer needs this session", key)]

    def media_failed(self, reason: str, now: float, key: str = "main") -> list[Command]:
        return []

    def caller_cancelled(self, now: float) -> list[Command]:
        return []  # connected long ago: a CANCEL has nothing left to cancel (RFC 3261 9.2)

    def owns_response(self, response: Response) -> bool:
        return self.callee is not None and response.call_id == self.callee.dialog.call_id

    def side(self, from_caller: bool) -> Side | None:
        if self.phase is not Phase.CONNECTED:
            return None
        end, other = (self.caller, self.callee) if from_caller else (self.callee, self.caller)
        if end is None:
            return None
        other_leg = other.media_leg if other is not None else None
        return Side(end.dialog, end.address.contact, end.media_leg, self.media_key, end.party, other_leg)

    def bye(self, from_caller: bool, now: float) -> list[Command]:
        """A BYE from one end (the stack answered it 200): the other end gets ours."""
        if self.phase is not Phase.CONNECTED:
            return []
        other = self.callee if from_caller else self.caller
        commands = self._bye(other, caller=not from_caller)
        end = self.caller if from_caller else self.callee
        party = end.party if end is not None else Party.AGENT
        return commands + self._end(for_cause(EndCause.NORMAL_CLEARING), party, now)

    def hang_up(self, cause: EndCause, now: float, by: Party = Party.SYSTEM) -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        commands = self._bye(self.caller, caller=True) + self._bye(self.callee, caller=False)
        return commands + self._end(for_cause(cause), by, now)

    def branch_response(self, index: int, response: Response, now: float) -> list[Command]:
        """The callee's answer to our in-dialog request: only the session refresh needs one."""
        refresh = self._refresh
        if (
            refresh is None
            or response.cseq.method != "INVITE"
            or response.cseq.seq != refresh.cseq.seq
            or self.phase is not Phase.CONNECTED
        ):
            return []
        return self._refreshed(response, now)

    def branch_failed(self, index: int, *, timed_out: bool, now: float) -> list[Command]:
        if self.phase is Phase.CONNECTED and self._refresh is not None:
            # RFC 4028 10: a refresh that got no answer ends the session.
            self._refresh = None
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        return []

    def stray_response(self, response: Response, now: float) -> list[Command]:
        """A 2xx retransmitted by the callee: our ACK was lost (RFC 3261 13.2.2.4)."""
        callee = self.callee
        if callee is None or response.cseq.method != "INVITE" or not 200 <= response.status_code < 300:
            return []
        if self._refresh is not None and response.cseq.seq == self._refresh.cseq.seq:
            return self._refreshed(response, now)
        address = callee.address
        return [
            SendToBranch(CALLEE, callee.dialog.ack(via_host=address.via_host, transport=address.transport))
        ]

    def timer_fired(self, name: str, now: float) -> list[Command]:
        due = self.due.get(name)
        if self.phase is not Phase.CONNECTED or due is None or now < due - 0.001:
            return []
        del self.due[name]
        callee, session = self.callee, self.session
        if name == "session-expire":
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        if name == "session-refresh" and callee is not None and session is not None:
            asked = SessionExpires(session.interval_s, "uac")
            address = callee.address
            self._refresh = callee.dialog.request(
                "INVITE",
                via_host=address.via_host,
                transport=address.transport,
                headers=(("Session-Expires", asked.header()), ("Supported", "timer")),
                body=callee.offer,
                content_type=SDP,
            )
            callee.dialog.invite_sent()
            return [SendToBranch(CALLEE, self._refresh)]
        return []

    def session_refreshed(self, from_caller: bool, now: float) -> list[Command]:
        """The callee refreshed the session (RFC 4028): its deadline moves on."""
        session = self.session
        if from_caller or session is None or session.refresher != "uas":
            return []
        return [self._arm("session-expire", expire_at(now, session.interval_s))]

    def session_header(self, from_caller: bool) -> str | None:
        if from_caller or self.session is None:
            return None
        return SessionExpires(self.session.interval_s, "uac").header()

    # --- steps --------------------------------------------------------------------------------

    def _release_media(self, reason: str) -> list[Command]:
        # The session keeps the key it had on the original call ("webrtc", "rtp" for a call that
        # rang agents), not the base class's "main".
        return [StopMedia(reason, self.media_key)] if self.media_session is not None else []

    def _bye(self, end: End | None, *, caller: bool) -> list[Command]:
        if end is None or end.dialog.state is DialogState.TERMINATED:
            return []
        address = end.address
        bye = end.dialog.request("BYE", via_host=address.via_host, transport=address.transport)
        return [SendToCaller(bye) if caller else SendToBranch(CALLEE, bye)]

    def _arm(self, name: str, at: float) -> StartTimer:
        self.due[name] = at
        return StartTimer(name, at)

    def _refreshed(self, response: Response, now: float) -> list[Command]:
        """The answer to our refresh re-INVITE (RFC 4028 10), as the original call handled it."""
        code = response.status_code
        callee = self.callee
        if code < 200 or callee is None:
            return []
        refresh, self._refresh = self._refresh, None
        if 200 <= code < 300:
            address = callee.address
            callee.dialog.update_from_response(response)
            ack = SendToBranch(
                CALLEE, callee.dialog.ack(via_host=address.via_host, transport=address.transport)
            )
            answered = parse_session_expires(response.headers.get("Session-Expires"))
            if answered is None:
                self.session = None
                self.due.clear()
                return [ack]
            self.session = SessionExpires(answered.interval_s, answered.refresher or "uac")
            self.due.clear()
            if self.session.refresher == "uac":
                return [ack, self._arm("session-refresh", refresh_at(now, answered.interval_s))]
            return [ack, self._arm("session-expire", expire_at(now, answered.interval_s))]
        if code in (408, 481):
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        if code == 422 and refresh is not None and self.session is not None:
            min_se = parse_min_se(response.headers.get("Min-SE"))
            if min_se is not None and min_se > self.session.interval_s:
                self.session = SessionExpires(min_se, "uac")
                return [self._arm("session-refresh", now)]
        return [self._arm("session-refresh", now + RETRY_S)]


__all__ = ["CALLEE", "BridgedCall", "End"]
