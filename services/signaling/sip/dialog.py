"""SIP dialogs (RFC 3261 12), sans-I/O: the state two user agents share for the life of a call.

A dialog is identified by Call-ID, local tag and remote tag (12). It holds the remote target (the
peer's Contact), the route set from Record-Route, and both CSeq counters; from these it builds
every in-dialog request (BYE, re-INVITE, INFO, REFER, the ACK for a 2xx) and checks every
in-dialog request that arrives (12.2.2: a CSeq lower than the last one is out of order).

The B2BUA holds two dialogs per call, one per leg; this module knows nothing of calls.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import Enum

from services.signaling.sip.address import Address
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.message import Request, Response
from services.signaling.sip.uri import AbsoluteUri, SipUri
from services.signaling.sip.via import MAGIC_COOKIE

#: Upper bound for a new local CSeq (12.2.1.1: less than 2**31 leaves room to count up).
_CSEQ_START_LIMIT = 1 << 16


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


class DialogError(Exception):
    """A message that cannot belong to this dialog, or a request the dialog cannot build."""


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: Address
    remote_uri: Address
    remote_target: SipUri | AbsoluteUri
    #: Route set, in the order requests must traverse it (12.1.1: reversed for the UAC).
    route_set: tuple[Address, ...]
    local_seq: int
    #: None until the peer sends its first in-dialog request (12.1.2).
    remote_seq: int | None
    secure: bool = False
    state: DialogState = DialogState.EARLY
    #: Our Contact, sent in target-refresh requests and their answers.
    local_contact: str = ""
    #: The INVITE's CSeq, which the ACK for its 2xx repeats (13.2.2.4).
    invite_seq: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # --- creation (12.1) ----------------------------------------------------------------------

    @classmethod
    def as_uac(cls, request: Request, response: Response, local_contact: str) -> Dialog:
        """The dialog a 1xx-with-tag or 2xx to our INVITE creates (12.1.2)."""
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if not remote_tag or not local_tag:
            raise DialogError("a dialog needs both tags")
        contacts = response.contacts
        if contacts == "*" or not contacts:
            if response.status_code >= 200:
                raise DialogError("a 2xx creating a dialog must carry a Contact (12.1.2)")
            target: SipUri | AbsoluteUri = request.uri
        else:
            target = contacts[0].uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.from_,
            remote_uri=response.to,
            remote_target=target,
            route_set=tuple(reversed(response.record_routes)),
            local_seq=request.cseq.seq,
            remote_seq=None,
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
            state=DialogState.CONFIRMED if 200 <= response.status_code < 300 else DialogState.EARLY,
            local_contact=local_contact,
            invite_seq=request.cseq.seq if request.method == "INVITE" else None,
        )

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, local_contact: str, *, confirmed: bool) -> Dialog:
        """The dialog our 1xx/2xx to a dialog-creating request creates (12.1.1)."""
        remote_tag = request.from_.tag
        if not remote_tag:
            raise DialogError("the request has no From tag (RFC 2543 peers are not supported here)")
        contacts = request.contacts
        if contacts == "*" or not contacts:
            raise DialogError("a dialog-creating request must carry a Contact (12.1.1)")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.to.with_tag(local_tag),
            remote_uri=request.from_,
            remote_target=contacts[0].uri,
            route_set=request.record_routes,
            local_seq=secrets.randbelow(_CSEQ_START_LIMIT) + 1,
            remote_seq=request.cseq.seq,
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
            state=DialogState.CONFIRMED if confirmed else DialogState.EARLY,
            local_contact=local_contact,
        )

    # --- updates --------------------------------------------------------------------------------

    def confirm(self) -> None:
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    def update_from_response(self, response: Response) -> None:
        """A 2xx to our target-refresh request (re-INVITE, UPDATE) may move the remote target (12.2.1.2)."""
        if 200 <= response.status_code < 300:
            contacts = response.contacts
            if contacts != "*" and contacts:
                self.remote_target = contacts[0].uri
            self.confirm()

    def accept_request(self, request: Request) -> None:
        """Check an in-dialog request from the peer (12.2.2); raises :class:`DialogError` when it is out
        of order, which the UAS answers 500 (12.2.2). A target-refresh request moves the target."""
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq:
                raise DialogError(f"CSeq {seq} is not above {self.remote_seq}")
            self.remote_seq = seq
        if request.method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            try:
                contacts = request.contacts
            except SipParseError:
                return
            if contacts != "*" and contacts:
                self.remote_target = contacts[0].uri

    # --- building requests (12.2.1.1) -------------------------------------------------------

    def request(
        self,
        method: str,
        *,
        via_host: str,
        transport: str,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """A new in-dialog request, with the next CSeq (ACK for a 2xx: use :meth:`ack`)."""
        if self.state is DialogState.TERMINATED and method != "ACK":
            raise DialogError(f"the dialog is over: no {method}")
        if method == "ACK":
            raise DialogError("build the ACK for a 2xx with ack()")
        self.local_seq += 1
        return self._build(method, self.local_seq, via_host, transport, headers, body, content_type)

    def ack(
        self, *, via_host: str, transport: str, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK for a 2xx to our INVITE: the INVITE's CSeq number, a new branch (13.2.2.4)."""
        seq = self.invite_seq if self.invite_seq is not None else self.local_seq
        return self._build("ACK", seq, via_host, transport, (), body, content_type)

    def invite_sent(self) -> None:
        """Remember that the request just built was a re-INVITE, so its ACK repeats its CSeq."""
        self.invite_seq = self.local_seq

    def _build(
        self,
        method: str,
        seq: int,
        via_host: str,
        transport: str,
        extra: tuple[tuple[str, str], ...],
        body: bytes,
        content_type: str | None,
    ) -> Request:
        uri, routes = self._destination()
        headers: list[tuple[str, str]] = [
            (
                "Via",
                f"SIP/2.0/{transport.upper()} {via_host};branch={MAGIC_COOKIE}{secrets.token_hex(10)};rport",
            ),
            ("Max-Forwards", "70"),
            ("From", str(self.local_uri)),
            ("To", str(self.remote_uri)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
        headers += [("Route", str(route)) for route in routes]
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER") and self.local_contact:
            headers.append(("Contact", self.local_contact))
        headers += extra
        if body and content_type:
            headers.append(("Content-Type", content_type))
        return Request(method, uri, headers, body)

    def _destination(self) -> tuple[SipUri | AbsoluteUri, tuple[Address, ...]]:
        """Request-URI and Route headers (12.2.1.1): loose routing keeps the target as Request-URI;
        a strict router (no ``lr``) is put in the Request-URI and the target goes last (RFC 3261
        16.12.1.2 compatibility)."""
        if not self.route_set:
            return self.remote_target, ()
        first = self.route_set[0].uri
        if isinstance(first, SipUri) and "lr" in first.params:
            return self.remote_target, self.route_set
        strict = first.replace(params=first.params.without("method")) if isinstance(first, SipUri) else first
        return strict, (*self.route_set[1:], Address(self.remote_target))


def dialog_id_of(message: Request | Response, *, ours: bool) -> DialogId:
    """The dialog a message belongs to, seen from our side (12). ``ours``: the request (or the
    request this response answers) was sent by us, so its From tag is our local tag."""
    from_tag = message.from_.tag or ""
    to_tag = message.to.tag or ""
    local, remote = (from_tag, to_tag) if ours else (to_tag, from_tag)
    return DialogId(message.call_id, local, remote)
