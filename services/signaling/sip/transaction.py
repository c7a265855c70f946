"""The SIP transaction layer (RFC 3261 17, with the RFC 6026 fix for INVITE 2xx), sans-I/O.

Four state machines, client and server, INVITE and non-INVITE, and the table that matches
messages to them (17.1.3, 17.2.3 with the RFC 2543 fallback of 17.2.3's last paragraphs). No
socket and no clock: every method takes ``now`` and returns :class:`Action` values for the caller
to carry out (transmit bytes, hand something to the transaction user); the caller asks
:meth:`TransactionLayer.next_deadline` when to call :meth:`TransactionLayer.expire` next. A test of
Timer E's backoff therefore runs in microseconds on a virtual clock.

Retransmissions happen only over unreliable transports (17.1.1.2, 17.1.2.2); on reliable ones the
timers that exist only to absorb retransmissions (D, I, J, K) are zero.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from services.signaling.sip.message import Request, Response
from services.signaling.sip.via import MAGIC_COOKIE


class Destination(Protocol):
    """Where a transaction's messages go: the transport layer's flow. Only reliability matters here."""

    @property
    def reliable(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 17.1.1.1 and Table 4; configurable, defaults as the RFC recommends."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        return 64 * self.t1

    @property
    def d(self) -> float:
        # "at least 32 seconds" for unreliable transports (17.1.1.2).
        return max(32.0, 64 * self.t1)


def new_branch() -> str:
    """A branch that starts with the magic cookie and is unique over space and time (8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(10)


class State(Enum):
    TRYING = "trying"
    CALLING = "calling"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` to ``destination`` (an encoded request or response)."""

    data: bytes
    destination: Destination
    transaction: Transaction | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU, with the server transaction that will carry its responses.

    ``transaction`` is None for an ACK to a 2xx, which is end-to-end and has no transaction (17.2.1).
    """

    request: Request
    destination: Destination
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for a client transaction's TU; ``transaction`` is None for a stray response
    (a 2xx retransmission after the transaction ended, 17.1.1.2: the dialog re-ACKs it)."""

    response: Response
    destination: Destination
    transaction: ClientTransaction | None


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F fired (no final response), or Timer H (no ACK to our final response)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not send for this transaction (17.1.4, 17.2.4)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over and has left the table."""

    transaction: Transaction


Action = Transmit | RequestReceived | ResponseReceived | TimedOut | TransportFailed | Terminated


# --- transactions ---------------------------------------------------------------------------


class Transaction:
    """What all four state machines share: identity, state, and named timers as deadlines."""

    is_invite: bool = False

    def __init__(self, key: Hashable, request: Request, destination: Destination, timers: Timers) -> None:
        self.key = key
        self.request = request
        self.destination = destination
        self.timers = timers
        self.state = State.TRYING
        #: Timer name -> absolute deadline.
        self.deadlines: dict[str, float] = {}
        #: Current retransmission interval of the running retransmit timer (A, E or G).
        self.interval = timers.t1
        #: Free slot for the transaction user (the call or registration this belongs to).
        self.owner: object | None = None

    @property
    def reliable(self) -> bool:
        return self.destination.reliable

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values(), default=None)

    def _set(self, name: str, now: float, delay: float) -> None:
        self.deadlines[name] = now + delay

    def _terminate(self) -> list[Action]:
        self.state = State.TERMINATED
        self.deadlines.clear()
        return [Terminated(self)]

    def fire(self, name: str, now: float) -> list[Action]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state.value}>"


class ClientTransaction(Transaction):
    def __init__(self, key: Hashable, request: Request, destination: Destination, timers: Timers) -> None:
        super().__init__(key, request, destination, timers)
        self._wire = request.encode()
        self.last_response: Response | None = None

    def start(self, now: float) -> list[Action]:
        raise NotImplementedError

    def receive(self, response: Response, now: float) -> list[Action]:
        raise NotImplementedError


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.1 (Figure 5), with RFC 6026's Accepted state for 2xx."""

    is_invite = True

    def start(self, now: float) -> list[Action]:
        self.state = State.CALLING
        if not self.reliable:
            self._set("A", now, self.timers.t1)
        self._set("B", now, self.timers.b)
        return [Transmit(self._wire, self.destination, self)]

    def receive(self, response: Response, now: float) -> list[Action]:
        code = response.status_code
        state = self.state
        if state in (State.CALLING, State.PROCEEDING):
            self.last_response = response
            if code < 200:
                self.state = State.PROCEEDING
                # Timer A stops in Proceeding; Timer B only guards Calling (Figure 5).
                self.deadlines.pop("A", None)
                self.deadlines.pop("B", None)
                return [ResponseReceived(response, self.destination, self)]
            if code < 300:
                # RFC 6026 7.2: Accepted absorbs 2xx retransmissions for 64*T1 and passes them up.
                self.state = State.ACCEPTED
                self.deadlines.clear()
                self._set("M", now, 64 * self.timers.t1)
                return [ResponseReceived(response, self.destination, self)]
            self.state = State.COMPLETED
            self.deadlines.clear()
            self._set("D", now, 0.0 if self.reliable else self.timers.d)
            return [
                Transmit(ack_for(self.request, response).encode(), self.destination, self),
                ResponseReceived(response, self.destination, self),
            ]
        if state is State.ACCEPTED and 200 <= code < 300:
            # Every 2xx goes to the TU, which ACKs each (RFC 6026 7.2, 13.2.2.4).
            return [ResponseReceived(response, self.destination, self)]
        if state is State.COMPLETED and code >= 300:
            # A retransmitted final response: ACK again, do not bother the TU (17.1.1.2).
            return [Transmit(ack_for(self.request, response).encode(), self.destination, self)]
        return []

    def fire(self, name: str, now: float) -> list[Action]:
        if name == "A" and self.state is State.CALLING:
            # Timer A doubles without the T2 cap that non-INVITE uses (17.1.1.2).
            self.interval *= 2
            self._set("A", now, self.interval)
            return [Transmit(self._wire, self.destination, self)]
        if name == "B" and self.state is State.CALLING:
            return [TimedOut(self), *self._terminate()]
        if name in ("D", "M"):
            return self._terminate()
        return []


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.2 (Figure 6)."""

    def start(self, now: float) -> list[Action]:
        self.state = State.TRYING
        if not self.reliable:
            self._set("E", now, self.timers.t1)
        self._set("F", now, self.timers.b)
        return [Transmit(self._wire, self.destination, self)]

    def receive(self, response: Response, now: float) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # retransmitted final in Completed: absorbed
        self.last_response = response
        if response.status_code < 200:
            self.state = State.PROCEEDING
            return [ResponseReceived(response, self.destination, self)]
        self.state = State.COMPLETED
        self.deadlines.clear()
        self._set("K", now, 0.0 if self.reliable else self.timers.t4)
        return [ResponseReceived(response, self.destination, self)]

    def fire(self, name: str, now: float) -> list[Action]:
        if name == "E" and self.state in (State.TRYING, State.PROCEEDING):
            # Trying doubles up to T2; Proceeding retransmits every T2 (17.1.2.2).
            doubled = min(2 * self.interval, self.timers.t2)
            self.interval = self.timers.t2 if self.state is State.PROCEEDING else doubled
            self._set("E", now, self.interval)
            return [Transmit(self._wire, self.destination, self)]
        if name == "F" and self.state in (State.TRYING, State.PROCEEDING):
            return [TimedOut(self), *self._terminate()]
        if name == "K":
            return self._terminate()
        return []


class ServerTransaction(Transaction):
    def __init__(self, key: Hashable, request: Request, destination: Destination, timers: Timers) -> None:
        super().__init__(key, request, destination, timers)
        self.last_response: Response | None = None
        self._last_wire: bytes | None = None
        #: To tag the TU chose for its responses (used to match ACKs of RFC 2543 peers).
        self.to_tag: str | None = None

    def retransmission(self, now: float) -> list[Action]:
        """The same request again: resend the last response, if any (17.2.1, 17.2.2)."""
        if self._last_wire is not None and self.state is not State.CONFIRMED:
            return [Transmit(self._last_wire, self.destination, self)]
        return []

    def respond(self, response: Response, now: float) -> list[Action]:
        raise NotImplementedError

    def _remember(self, response: Response) -> bytes:
        self.last_response = response
        self._last_wire = response.encode()
        tag = response.to.tag if response.status_code != 100 else None
        if tag is not None:
            self.to_tag = tag
        return self._last_wire


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.1 (Figure 7), with RFC 6026's Accepted state after a 2xx."""

    is_invite = True

    def __init__(self, key: Hashable, request: Request, destination: Destination, timers: Timers) -> None:
        super().__init__(key, request, destination, timers)
        self.state = State.PROCEEDING

    def respond(self, response: Response, now: float) -> list[Action]:
        code = response.status_code
        if self.state is not State.PROCEEDING:
            if self.state is State.ACCEPTED and 200 <= code < 300:
                # The TU retransmits its own 2xx until the ACK comes (13.3.1.4); pass it through.
                return [Transmit(self._remember(response), self.destination, self)]
            raise TransactionStateError(f"cannot send {code} in {self.state.value}")
        wire = self._remember(response)
        if code < 200:
            return [Transmit(wire, self.destination, self)]
        if code < 300:
            self.state = State.ACCEPTED
            self._set("L", now, 64 * self.timers.t1)
            return [Transmit(wire, self.destination, self)]
        self.state = State.COMPLETED
        if not self.reliable:
            self._set("G", now, self.timers.t1)
        self._set("H", now, 64 * self.timers.t1)
        return [Transmit(wire, self.destination, self)]

    def retransmission(self, now: float) -> list[Action]:
        # RFC 6026 7.1: in Accepted the INVITE retransmission is absorbed; the TU retransmits its 2xx.
        return [] if self.state is State.ACCEPTED else super().retransmission(now)

    def receive_ack(self, now: float) -> list[Action]:
        if self.state is not State.COMPLETED:
            return []
        self.state = State.CONFIRMED
        self.deadlines.clear()
        self._set("I", now, 0.0 if self.reliable else self.timers.t4)
        return []

    def fire(self, name: str, now: float) -> list[Action]:
        if name == "G" and self.state is State.COMPLETED and self._last_wire is not None:
            self.interval = min(2 * self.interval, self.timers.t2)
            self._set("G", now, self.interval)
            return [Transmit(self._last_wire, self.destination, self)]
        if name == "H" and self.state is State.COMPLETED:
            # No ACK to our final response: the TU learns the far end is gone (17.2.1).
            return [TimedOut(self), *self._terminate()]
        if name in ("I", "L"):
            return self._terminate()
        return []


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.2 (Figure 8)."""

    def respond(self, response: Response, now: float) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise TransactionStateError(f"cannot send {response.status_code} in {self.state.value}")
        wire = self._remember(response)
        if response.status_code < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._set("J", now, 0.0 if self.reliable else 64 * self.timers.t1)
        return [Transmit(wire, self.destination, self)]

    def retransmission(self, now: float) -> list[Action]:
        # In Trying a retransmission is absorbed silently: nothing was sent yet (17.2.2).
        return super().retransmission(now) if self.state is not State.TRYING else []

    def fire(self, name: str, now: float) -> list[Action]:
        if name == "J":
            return self._terminate()
        return []


class TransactionStateError(Exception):
    """The TU tried something the transaction's state does not allow (a bug in the caller)."""


# --- building ACK for non-2xx (17.1.1.3) ----------------------------------------------------------


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID, From and CSeq number; To from the response (it carries the tag);
    only the top Via; the INVITE's Route headers.
    """
    src = invite.headers
    headers: list[tuple[str, str]] = [("Via", src.get_all("Via")[0].split(",")[0].strip())]
    for name in ("Route",):
        headers += [(name, value) for value in src.get_all(name)]
    headers += [
        ("Max-Forwards", "70"),
        ("From", src.get("From") or ""),
        ("To", response.headers.get("To") or src.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.seq} ACK"),
    ]
    return Request("ACK", invite.uri, headers)


# --- matching and the table -------------------------------------------------------------------


def server_key(request: Request) -> Hashable:
    """Server transaction key (17.2.3): branch + sent-by + method, ACK and CANCEL aside.

    ACK matches the INVITE it acknowledges; CANCEL has its own transaction (9.2). A branch without
    the magic cookie comes from an RFC 2543 client and is matched on the older rules instead.
    """
    via = request.via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, via.sent_by.lower(), method)
    # RFC 2543 (17.2.3): Request-URI, To tag, From tag, Call-ID, CSeq number and top Via. The ACK
    # for a non-2xx carries the To tag we sent, so ACKs are matched in _match_ack_2543 instead.
    return (
        "2543",
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        str(via),
        method,
        None if request.method == "ACK" else request.to.tag,
    )


def client_key(branch: str, method: str) -> Hashable:
    """Client transaction key (17.1.3): the branch we put in the top Via and the CSeq method."""
    return (branch, "INVITE" if method == "ACK" else method)


@dataclass
class TransactionLayer:
    """Every transaction of one SIP element, and the timers that drive them."""

    timers: Timers = field(default_factory=Timers)

    def __post_init__(self) -> None:
        self._server: dict[Hashable, ServerTransaction] = {}
        self._client: dict[Hashable, ClientTransaction] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._seq = itertools.count()

    # --- inbound ---------------------------------------------------------------------------

    def receive_request(self, request: Request, destination: Destination, now: float) -> list[Action]:
        if request.method == "ACK":
            return self._receive_ack(request, destination, now)
        key = server_key(request)
        existing = self._server.get(key)
        if existing is not None:
            return existing.retransmission(now)
        txn: ServerTransaction
        if request.method == "INVITE":
            txn = ServerInviteTransaction(key, request, destination, self.timers)
        else:
            txn = ServerNonInviteTransaction(key, request, destination, self.timers)
        self._server[key] = txn
        return [RequestReceived(request, destination, txn)]

    def _receive_ack(self, ack: Request, destination: Destination, now: float) -> list[Action]:
        txn = self._server.get(server_key(ack))
        if txn is None and not _has_cookie(ack):
            txn = self._match_ack_2543(ack)
        if isinstance(txn, ServerInviteTransaction) and txn.state in (State.COMPLETED, State.CONFIRMED):
            actions = txn.receive_ack(now)
            self._schedule(txn)
            return actions
        # ACK for a 2xx: end-to-end, the dialog's business (17.2.1, 13.3.1.4).
        return [RequestReceived(ack, destination, None)]

    def _match_ack_2543(self, ack: Request) -> ServerTransaction | None:
        to_tag = ack.to.tag
        for txn in self._server.values():
            invite = txn.request
            if (
                txn.is_invite
                and txn.to_tag == to_tag
                and invite.call_id == ack.call_id
                and invite.cseq.seq == ack.cseq.seq
                and invite.from_.tag == ack.from_.tag
                and str(invite.uri) == str(ack.uri)
            ):
                return txn
        return None

    def receive_response(self, response: Response, destination: Destination, now: float) -> list[Action]:
        branch = response.via.branch
        txn = self._client.get(client_key(branch or "", response.cseq.method))
        if txn is None:
            return [ResponseReceived(response, destination, None)]
        actions = txn.receive(response, now)
        self._schedule(txn)
        return self._reap(txn, actions)

    # --- outbound --------------------------------------------------------------------------

    def send_request(
        self, request: Request, destination: Destination, now: float
    ) -> tuple[ClientTransaction, list[Action]]:
        """Start a client transaction for ``request``; its top Via must carry a fresh branch.

        ACK for a 2xx is not a transaction (17.1.1.3): send it with :meth:`transmit` instead.
        """
        if request.method == "ACK":
            raise TransactionStateError("ACK is not sent in a client transaction")
        branch = request.via.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise ValueError("a request we send needs a branch with the magic cookie (8.1.1.7)")
        key = client_key(branch, request.method)
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        txn = cls(key, request, destination, self.timers)
        self._client[key] = txn
        actions = txn.start(now)
        self._schedule(txn)
        return txn, actions

    def respond(self, txn: ServerTransaction, response: Response, now: float) -> list[Action]:
        actions = txn.respond(response, now)
        self._schedule(txn)
        return self._reap(txn, actions)

    def transport_failed(self, txn: Transaction) -> list[Action]:
        """The transport could not send for ``txn``: it ends at once (17.1.4, 17.2.4)."""
        if txn.terminated:
            return []
        return [TransportFailed(txn), *self._reap(txn, txn._terminate())]

    def find_invite(self, cancel: Request) -> ServerInviteTransaction | None:
        """The INVITE server transaction a CANCEL refers to (9.2): same key, method INVITE."""
        key = server_key(cancel)
        assert isinstance(key, tuple)
        invite_key = (*key[:-1], "INVITE") if key[0] == "3261" else (*key[:6], "INVITE", key[7])
        txn = self._server.get(invite_key)
        return txn if isinstance(txn, ServerInviteTransaction) else None

    # --- time ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, txn = heap[0]
            if txn.next_deadline() == deadline:
                return deadline
            heapq.heappop(heap)  # stale entry: the transaction moved on
        return None

    def expire(self, now: float) -> list[Action]:
        """Fire every timer whose deadline has passed."""
        actions: list[Action] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, txn = heapq.heappop(heap)
            if txn.next_deadline() != deadline:
                continue
            for name, when in sorted(txn.deadlines.items(), key=lambda item: item[1]):
                if when <= now and txn.deadlines.get(name) == when:
                    del txn.deadlines[name]
                    actions += self._reap(txn, txn.fire(name, now))
            self._schedule(txn)
        return actions

    def __len__(self) -> int:
        return len(self._server) + len(self._client)

    # --- internals -------------------------------------------------------------------------

    def _schedule(self, txn: Transaction) -> None:
        deadline = txn.next_deadline()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._seq), txn))

    def _reap(self, txn: Transaction, actions: list[Action]) -> list[Action]:
        if txn.terminated:
            if isinstance(txn, ServerTransaction):
                self._server.pop(txn.key, None)
            else:
                self._client.pop(txn.key, None)
        return actions


def _has_cookie(request: Request) -> bool:
    branch = request.via.branch
    return branch is not None and branch.startswith(MAGIC_COOKIE)
