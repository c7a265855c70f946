"""What a signaling instance keeps of each call in KV ``calls``, so that its successor carries on.

Media never passes through signaling (ARCHITECTURE.md), so when a signaling process dies its calls'
audio goes on in the media workers; what dies with the process is the SIP side. A connected call is
fully described by its two dialogs (RFC 3261 12.1: Call-ID, local and remote tag, local and remote
CSeq, remote target, route set), how we appear on each leg (Via sent-by, Contact), where each end
is reached (a UDP address, a carrier's address to connect to again, or for an end on a connection
that died, the agent's RFC 5626 instance to wait for), the media session and the session timer's
state. That is :class:`CallSnapshot` (versioned: a successor running newer code reads the fields it
knows). A call not connected yet cannot be resumed (its INVITE transactions died with the process),
but its snapshot says how to end it cleanly: the caller's INVITE to answer 487, our pending INVITEs
to cancel (RFC 3261 9.1).

The event sequence is stored a block ahead (hi/lo): a successor continues from the stored value, so
an event published just before the process died is never numbered again (a gap is harmless:
consumers order by sequence and drop duplicates), and periodic events (quality, DTMF) do not each
cost a write.

Times are stored on the wall clock (epoch seconds); calls run on the event loop's monotonic clock,
so capture and restore translate with the offset between the two.

Sans-I/O: :func:`capture` and :func:`restore` only convert; b2bua/call_store.py writes and reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.signaling.b2bua.bridged import BridgedCall, End
from services.signaling.b2bua.call import Call, EchoCall, LegAddress, OutboundCall, Phase, cancel_for
from services.signaling.b2bua.ringing import BranchState, RingCall, media_plan
from services.signaling.b2bua.session_timer import SessionExpires
from services.signaling.sip.address import parse_address
from services.signaling.sip.dialog import Dialog, DialogState
from services.signaling.sip.message import Request, Response, make_response
from services.signaling.sip.uri import parse_uri
from shared.events import (
    CallEnded,
    CallEndedData,
    EndCause,
    LegKind,
    Party,
    RecordingState,
)
from shared.outcomes import for_cause

SNAPSHOT_VERSION = 1
#: Sequence numbers reserved ahead of the call's own (see the module's docstring).
SEQUENCE_BLOCK = 8
#: The headers a response to, or a CANCEL of, an INVITE is built from (RFC 3261 8.2.6, 9.1).
_HEAD_HEADERS = ("via", "from", "to", "call-id", "cseq")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FlowRef(_Model):
    """Where an end was reached: the transport and the far address; for an agent on a connection,
    the registration (address-of-record, RFC 5626 instance) it will come back with."""

    transport: str
    host: str
    port: int
    aor: str | None = None
    instance: str | None = None


class DialogSnapshot(_Model):
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str]
    local_seq: int
    remote_seq: int | None
    secure: bool = False
    local_contact: str = ""
    invite_seq: int | None = None


class EndSnapshot(_Model):
    dialog: DialogSnapshot
    #: How we appear on the leg (LegAddress).
    via_host: str
    contact: str
    transport: str
    flow: FlowRef | None
    media_leg: LegKind
    party: Party
    agent_id: str | None = None
    #: Our SDP towards a plain RTP end, offered again by a session refresh.
    offer: str = ""


class MessageHead(_Model):
    """An INVITE without its body: enough to answer it or to cancel it."""

    uri: str
    headers: list[tuple[str, str]]


class PendingInvite(_Model):
    invite: MessageHead
    flow: FlowRef | None


class CallSnapshot(_Model):
    version: int = SNAPSHOT_VERSION
    call_id: str
    tenant_id: str
    record: bool = False
    recording_state: RecordingState = RecordingState.RECORDING
    #: The first sequence number a successor may use.
    next_sequence: int
    created_epoch: float
    answered_epoch: float | None = None
    answered_wall: datetime | None = None
    trunk_id: str | None = None
    #: Every media session the call holds: (worker, session id, key).
    sessions: list[tuple[str, str, str]] = []
    connected: bool
    # --- a connected call -----------------------------------------------------------------
    caller: EndSnapshot | None = None
    callee: EndSnapshot | None = None
    media_key: str = "main"
    held_by: list[Party] = []
    session_interval_s: int | None = None
    session_refresher: Literal["uac", "uas"] | None = None
    #: Session timers' due times (epoch) by name.
    due: dict[str, float] = {}
    # --- a call being set up ----------------------------------------------------------------
    caller_invite: MessageHead | None = None
    caller_tag: str | None = None
    caller_flow: FlowRef | None = None
    pending: list[PendingInvite] = []


@dataclass(frozen=True, slots=True)
class Flows:
    """Where the call's ends are reached, as the glue knows them (b2bua/calls.py ``_Leg``)."""

    caller: FlowRef | None
    #: The callee's flow of a connected call (a carrier or the agent who answered).
    callee: FlowRef | None
    #: The flow of each branch we rang (RingCall), by index.
    branches: tuple[FlowRef | None, ...] = ()
    #: The flow to the carrier (OutboundCall).
    carrier: FlowRef | None = None


# --- capture -----------------------------------------------------------------------------------


def capture(
    call: Call, flows: Flows, sessions: dict[str, tuple[str, str]], wall_offset: float
) -> CallSnapshot | None:
    """The snapshot of a live call (None: nothing worth keeping, such as a call that ended).
    ``wall_offset`` is epoch minus the event loop's clock."""
    if call.phase is Phase.ENDED:
        return None
    base = {
        "call_id": call.call_id,
        "tenant_id": call.tenant_id,
        "record": call.record,
        "recording_state": call.recording_state,
        "next_sequence": (call._sequence // SEQUENCE_BLOCK + 2) * SEQUENCE_BLOCK,
        "created_epoch": round(call.created_at + wall_offset, 3),
        "trunk_id": call.trunk_id,
        "sessions": [(w, s, k) for k, (w, s) in sessions.items()],
    }
    if call.phase is Phase.CONNECTED:
        connected = _connected(call, flows)
        if connected is not None:
            answered = call.answered_at
            return CallSnapshot(
                **base,
                connected=True,
                answered_epoch=round(answered + wall_offset, 3) if answered is not None else None,
                answered_wall=call.answered_wall,
                held_by=sorted(call._held_by),
                due={name: round(at + wall_offset, 3) for name, at in connected.due.items()},
                caller=connected.caller,
                callee=connected.callee,
                media_key=connected.media_key,
                session_interval_s=connected.session.interval_s if connected.session else None,
                session_refresher=connected.session.refresher if connected.session else None,
            )
    return CallSnapshot(
        **base,
        connected=False,
        caller_invite=_head(call.caller_invite),
        caller_tag=call.caller_tag,
        caller_flow=flows.caller,
        pending=_pending(call, flows),
    )


@dataclass(frozen=True, slots=True)
class _Connected:
    caller: EndSnapshot
    callee: EndSnapshot | None
    media_key: str
    session: SessionExpires | None
    due: dict[str, float]


def _connected(call: Call, flows: Flows) -> _Connected | None:
    if isinstance(call, BridgedCall):
        callee = call.callee
        return _Connected(
            _end(
                call.caller.dialog,
                call.caller.address,
                flows.caller,
                call.caller.media_leg,
                call.caller.party,
                call.caller.agent_id,
            ),
            _end(
                callee.dialog,
                callee.address,
                flows.callee,
                callee.media_leg,
                callee.party,
                callee.agent_id,
                callee.offer,
            )
            if callee is not None
            else None,
            call.media_key,
            call.session,
            dict(call.due),
        )
    if isinstance(call, OutboundCall):
        if call.agent_dialog is None or call.carrier_dialog is None:
            return None
        return _Connected(
            _end(
                call.agent_dialog, call.agent_address, flows.caller, LegKind.AGENT, Party.AGENT, call.agent_id
            ),
            _end(
                call.carrier_dialog,
                call.carrier_address,
                flows.carrier,
                LegKind.CUSTOMER,
                Party.CUSTOMER,
                None,
                call._carrier_sdp,
            ),
            "main",
            call._session,
            dict(call._due),
        )
    if isinstance(call, EchoCall):
        if call.agent_dialog is None:
            return None
        caller = _end(
            call.agent_dialog, call.agent_address, flows.caller, LegKind.AGENT, Party.AGENT, call.agent_id
        )
        return _Connected(caller, None, "main", None, {})
    if isinstance(call, RingCall):
        winner = call.winner
        if winner is None or winner.dialog is None or call.caller_dialog is None:
            return None
        _, caller_leg, callee_leg = media_plan(call.caller.webrtc, winner.target.webrtc)
        callee_party = Party.AGENT if winner.target.agent_id is not None else Party.CUSTOMER
        return _Connected(
            _end(
                call.caller_dialog,
                call.caller.address,
                flows.caller,
                caller_leg,
                call.caller.party,
                call.caller.agent_id,
            ),
            _end(
                winner.dialog,
                winner.target.address,
                flows.callee,
                callee_leg,
                callee_party,
                winner.target.agent_id,
            ),
            winner.key,
            None,
            {},
        )
    return None


def _end(
    dialog: Dialog,
    address: LegAddress,
    flow: FlowRef | None,
    media_leg: LegKind,
    party: Party,
    agent_id: str | None,
    offer: bytes = b"",
) -> EndSnapshot:
    return EndSnapshot(
        dialog=DialogSnapshot(
            call_id=dialog.call_id,
            local_tag=dialog.local_tag,
            remote_tag=dialog.remote_tag,
            local_uri=str(dialog.local_uri),
            remote_uri=str(dialog.remote_uri),
            remote_target=str(dialog.remote_target),
            route_set=[str(route) for route in dialog.route_set],
            local_seq=dialog.local_seq,
            remote_seq=dialog.remote_seq,
            secure=dialog.secure,
            local_contact=dialog.local_contact,
            invite_seq=dialog.invite_seq,
        ),
        via_host=address.via_host,
        contact=address.contact,
        transport=address.transport,
        flow=flow,
        media_leg=media_leg,
        party=party,
        agent_id=agent_id,
        offer=offer.decode("utf-8", "replace"),
    )


def _head(request: Request) -> MessageHead:
    headers = [(name, value) for name, value in request.headers if name.lower() in _HEAD_HEADERS]
    return MessageHead(uri=str(request.uri), headers=headers)


def _pending(call: Call, flows: Flows) -> list[PendingInvite]:
    """Our INVITEs still waiting for a final answer: cancelled by a successor."""
    if isinstance(call, OutboundCall):
        if call.carrier_invite is None or call.phase not in (
            Phase.DIALING,
            Phase.RINGING,
            Phase.EARLY_MEDIA,
        ):
            return []
        return [PendingInvite(invite=_head(call.carrier_invite), flow=flows.carrier)]
    if isinstance(call, RingCall):
        pending: list[PendingInvite] = []
        for branch in call.branches:
            if branch.invite is None or branch.state not in (
                BranchState.CALLING,
                BranchState.PROCEEDING,
                BranchState.CANCELLING,
            ):
                continue
            flow = flows.branches[branch.index] if branch.index < len(flows.branches) else None
            pending.append(PendingInvite(invite=_head(branch.invite), flow=flow))
        return pending
    return []


# --- restore -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Restored:
    """A connected call taken over, and where its ends are."""

    call: BridgedCall
    caller_flow: FlowRef | None
    callee_flow: FlowRef | None
    #: (worker, session) of the media session bridging it.
    session: tuple[str, str] | None


def restore(snapshot: CallSnapshot, *, now: float, wall_offset: float, source: str) -> Restored:
    """A connected call's snapshot as a :class:`BridgedCall` on this instance's clock."""
    if not snapshot.connected or snapshot.caller is None:
        raise ValueError("only a connected call can be restored")
    caller = _restore_end(snapshot.caller)
    callee = _restore_end(snapshot.callee) if snapshot.callee is not None else None
    session = (
        SessionExpires(snapshot.session_interval_s, snapshot.session_refresher)
        if snapshot.session_interval_s is not None
        else None
    )
    media = next(((w, s) for w, s, k in snapshot.sessions if k == snapshot.media_key), None)
    call = BridgedCall(
        call_id=snapshot.call_id,
        tenant_id=snapshot.tenant_id,
        record=snapshot.record,
        recording_state=snapshot.recording_state,
        media_worker=media[0] if media else None,
        media_session=media[1] if media else None,
        created_at=snapshot.created_epoch - wall_offset,
        answered_at=(snapshot.answered_epoch - wall_offset) if snapshot.answered_epoch is not None else now,
        answered_wall=snapshot.answered_wall,
        source=source,
        _sequence=snapshot.next_sequence,
        _held_by=set(snapshot.held_by),
        caller=caller,
        callee=callee,
        media_key=snapshot.media_key,
        trunk=snapshot.trunk_id,
        session=session,
        due={name: at - wall_offset for name, at in snapshot.due.items()},
    )
    return Restored(
        call,
        snapshot.caller.flow,
        snapshot.callee.flow if snapshot.callee is not None else None,
        media,
    )


def _restore_end(end: EndSnapshot) -> End:
    d = end.dialog
    dialog = Dialog(
        call_id=d.call_id,
        local_tag=d.local_tag,
        remote_tag=d.remote_tag,
        local_uri=parse_address(d.local_uri),
        remote_uri=parse_address(d.remote_uri),
        remote_target=parse_uri(d.remote_target),
        route_set=tuple(parse_address(route) for route in d.route_set),
        local_seq=d.local_seq,
        remote_seq=d.remote_seq,
        secure=d.secure,
        state=DialogState.CONFIRMED,
        local_contact=d.local_contact,
        invite_seq=d.invite_seq,
    )
    return End(
        dialog=dialog,
        address=LegAddress(end.via_host, end.contact, end.transport),
        media_leg=end.media_leg,
        party=end.party,
        agent_id=end.agent_id,
        offer=end.offer.encode(),
    )


# --- a call that cannot be resumed -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Abandoned:
    """How a call that was being set up ends: the caller's INVITE answered, ours cancelled."""

    #: The final response to the caller's INVITE, and where it goes.
    answer: tuple[Response, FlowRef] | None
    #: CANCEL for each of our pending INVITEs, with the INVITE (its final answer is ACKed).
    cancels: list[tuple[Request, Request, FlowRef]]
    ended: CallEnded


def abandon(snapshot: CallSnapshot, *, now_epoch: float, source: str) -> Abandoned:
    """End a call the previous instance was still setting up (RFC 3261 9.1 CANCEL, 487 to the caller)."""
    outcome = for_cause(EndCause.SIGNALING_RESTARTED)
    answer: tuple[Response, FlowRef] | None = None
    if snapshot.caller_invite is not None and snapshot.caller_flow is not None:
        invite = _request(snapshot.caller_invite)
        response = make_response(invite, 487, outcome.message[:100], to_tag=snapshot.caller_tag)
        answer = (response, snapshot.caller_flow)
    cancels: list[tuple[Request, Request, FlowRef]] = []
    for pending in snapshot.pending:
        if pending.flow is None:
            continue
        invite = _request(pending.invite)
        cancels.append((_cancel(invite), invite, pending.flow))
    ended = CallEnded(
        tenant_id=snapshot.tenant_id,
        call_id=snapshot.call_id,
        sequence=snapshot.next_sequence,
        source=source,
        data=CallEndedData(
            status=outcome.status,
            cause=outcome.cause,
            ended_by=Party.SYSTEM,
            sip_status=487 if answer is not None else None,
            sip_reason=outcome.message[:120],
            message=outcome.message,
            duration_s=max(0.0, now_epoch - snapshot.created_epoch),
            talk_time_s=0.0,
            quality=[],
        ),
    )
    return Abandoned(answer, cancels, ended)


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response to an INVITE whose transaction died with the previous
    instance (RFC 3261 17.1.1.3: the INVITE's Request-URI, top Via, From, Call-ID and CSeq number,
    the response's To)."""
    headers = [
        ("Via", invite.headers.get_all("Via")[0]),
        ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.seq} ACK"),
    ]
    return Request("ACK", invite.uri, headers)


def _request(head: MessageHead) -> Request:
    return Request("INVITE", head.uri, head.headers)


def _cancel(invite: Request) -> Request:
    return cancel_for(invite)


__all__ = [
    "SEQUENCE_BLOCK",
    "SNAPSHOT_VERSION",
    "Abandoned",
    "CallSnapshot",
    "DialogSnapshot",
    "EndSnapshot",
    "FlowRef",
    "Flows",
    "MessageHead",
    "PendingInvite",
    "Restored",
    "abandon",
    "ack_for",
    "capture",
    "restore",
]
