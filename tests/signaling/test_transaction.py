"""RFC 3261 section 17 state machines on a virtual clock: every timer, in microseconds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.signaling.sip.message import Request, Response, make_response, parse_message
from services.signaling.sip.transaction import (
    Action,
    ClientInviteTransaction,
    RequestReceived,
    ResponseReceived,
    ServerInviteTransaction,
    State,
    Terminated,
    TimedOut,
    Timers,
    TransactionLayer,
    TransactionStateError,
    Transmit,
    TransportFailed,
    new_branch,
)


@dataclass(frozen=True)
class Dest:
    reliable: bool = False


UDP, TCP = Dest(False), Dest(True)


def request(
    method: str = "OPTIONS", branch: str | None = None, *, to_tag: str = "", cseq: int = 1
) -> Request:
    branch = branch or new_branch()
    to = "<sip:bob@example.test>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:bob@example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.test>;tag=a1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@example.test\r\n"
        f"CSeq: 1 {'INVITE' if method == 'ACK' else method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def response_to(req: Request, code: int, to_tag: str = "b1") -> Response:
    return make_response(req, code, to_tag=to_tag)


def transmits(actions: list[Action]) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Transmit)]


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Action]]:
    """Drive the layer's timers up to ``end`` the way the service loop does."""
    fired: list[tuple[float, Action]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        fired += [(deadline, a) for a in layer.expire(deadline)]
    return fired


# --- client non-INVITE (17.1.2) -----------------------------------------------------------------


def test_timer_e_backs_off_to_t2_and_timer_f_times_out() -> None:
    layer = TransactionLayer()
    txn, actions = layer.send_request(request(), UDP, now=0.0)
    assert len(transmits(actions)) == 1
    fired = run_until(layer, 40.0)
    sends = [round(t, 3) for t, a in fired if isinstance(a, Transmit)]
    # Intervals 0.5, 1, 2, 4, 4, ... until Timer F = 64*T1 = 32 s.
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(t, type(a)) for t, a in fired if not isinstance(a, Transmit)] == [
        (32.0, TimedOut),
        (32.0, Terminated),
    ]
    assert len(layer) == 0
    assert txn.terminated


def test_provisional_moves_to_t2_retransmissions_and_final_completes() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    txn, _ = layer.send_request(req, UDP, 0.0)
    [event] = layer.receive_response(response_to(req, 100), UDP, 0.2)
    assert isinstance(event, ResponseReceived)
    assert event.transaction is txn
    assert txn.state is State.PROCEEDING
    fired = run_until(layer, 5.0)
    # The pending retransmission at 0.5 keeps its time; after it, every T2 (17.1.2.2).
    assert [t for t, a in fired if isinstance(a, Transmit)] == [0.5, 4.5]
    final = layer.receive_response(response_to(req, 200), UDP, 5.0)
    assert [type(a) for a in final] == [ResponseReceived]
    assert txn.state is State.COMPLETED
    # A retransmitted final response is absorbed in Completed.
    assert layer.receive_response(response_to(req, 200), UDP, 6.0) == []
    fired = run_until(layer, 20.0)
    assert [(t, type(a)) for t, a in fired] == [(10.0, Terminated)]  # Timer K = T4


def test_reliable_transport_sends_once_and_ends_at_once() -> None:
    layer = TransactionLayer()
    req = request()
    txn, _ = layer.send_request(req, TCP, 0.0)
    assert run_until(layer, 31.0) == []
    layer.receive_response(response_to(req, 200), TCP, 1.0)
    assert [type(a) for _, a in run_until(layer, 1.0)] == [Terminated]  # Timer K = 0 on TCP
    assert txn.terminated


def test_configurable_timers() -> None:
    layer = TransactionLayer(Timers(t1=0.1, t2=0.4, t4=1.0))
    layer.send_request(request(), UDP, 0.0)
    fired = run_until(layer, 10.0)
    sends = [round(t, 3) for t, a in fired if isinstance(a, Transmit)]
    assert sends[:4] == [0.1, 0.3, 0.7, 1.1]
    assert fired[-1][0] == pytest.approx(6.4)  # F = 64*T1


# --- client INVITE (17.1.1, RFC 6026) -----------------------------------------------------------


def test_timer_a_doubles_without_cap_and_timer_b_times_out() -> None:
    layer = TransactionLayer()
    layer.send_request(request("INVITE"), UDP, 0.0)
    fired = run_until(layer, 40.0)
    assert [t for t, a in fired if isinstance(a, Transmit)] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [type(a) for t, a in fired if t == 32.0] == [TimedOut, Terminated]


def test_provisional_stops_timer_a_and_b() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    txn, _ = layer.send_request(req, UDP, 0.0)
    layer.receive_response(response_to(req, 180), UDP, 0.1)
    assert run_until(layer, 100.0) == []
    assert txn.state is State.PROCEEDING


def test_non_2xx_is_acked_by_the_transaction_and_retransmissions_re_acked() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    layer.send_request(req, UDP, 0.0)
    busy = response_to(req, 486, to_tag="callee")
    actions = layer.receive_response(busy, UDP, 0.3)
    [ack_bytes] = transmits(actions)
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.via.branch == req.via.branch  # same transaction (17.1.1.3)
    assert ack.to.tag == "callee"
    assert ack.cseq.seq == 1
    assert ack.cseq.method == "ACK"
    assert [type(a) for a in actions] == [Transmit, ResponseReceived]
    again = layer.receive_response(busy, UDP, 1.0)
    assert [type(a) for a in again] == [Transmit]  # ACK again, TU not bothered
    fired = run_until(layer, 40.0)
    assert [(t, type(a)) for t, a in fired] == [(32.3, Terminated)]  # Timer D


def test_2xx_retransmissions_reach_the_tu_in_accepted() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    txn, _ = layer.send_request(req, UDP, 0.0)
    ok = response_to(req, 200)
    assert [type(a) for a in layer.receive_response(ok, UDP, 0.1)] == [ResponseReceived]
    assert txn.state is State.ACCEPTED
    [again] = layer.receive_response(ok, UDP, 0.6)
    assert isinstance(again, ResponseReceived)
    assert again.transaction is txn
    run_until(layer, 40.0)
    assert txn.terminated
    [stray] = layer.receive_response(ok, UDP, 41.0)
    assert isinstance(stray, ResponseReceived)
    assert stray.transaction is None


# --- server INVITE (17.2.1, RFC 6026) -----------------------------------------------------------


def test_server_invite_retransmits_final_until_ack_then_absorbs() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    [received] = layer.receive_request(req, UDP, 0.0)
    assert isinstance(received, RequestReceived)
    txn = received.transaction
    assert isinstance(txn, ServerInviteTransaction)
    assert layer.receive_request(req, UDP, 0.1) == []  # nothing sent yet: absorbed
    ringing = transmits(layer.respond(txn, response_to(req, 180, "us"), 0.2))
    assert transmits(layer.receive_request(req, UDP, 0.3)) == ringing  # last provisional again
    layer.respond(txn, response_to(req, 486, "us"), 1.0)
    fired = run_until(layer, 5.0)
    assert [t for t, a in fired if isinstance(a, Transmit)] == [1.5, 2.5, 4.5]  # Timer G
    ack = request("ACK", req.via.branch, to_tag="us")
    assert layer.receive_request(ack, UDP, 5.0) == []  # absorbed by the transaction
    assert txn.state is State.CONFIRMED
    assert run_until(layer, 9.0) == []
    assert [(t, type(a)) for t, a in run_until(layer, 11.0)] == [(10.0, Terminated)]  # Timer I = T4


def test_server_invite_without_ack_times_out_with_timer_h() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    [received] = layer.receive_request(req, UDP, 0.0)
    assert received.transaction is not None
    layer.respond(received.transaction, response_to(req, 603), 0.0)
    fired = run_until(layer, 40.0)
    assert [type(a) for t, a in fired if t == 32.0] == [TimedOut, Terminated]


def test_server_invite_2xx_leaves_retransmission_to_the_tu_and_passes_the_ack() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    [received] = layer.receive_request(req, UDP, 0.0)
    assert received.transaction is not None
    txn = received.transaction
    layer.respond(txn, response_to(req, 200, "us"), 0.1)
    assert txn.state is State.ACCEPTED
    assert layer.receive_request(req, UDP, 0.2) == []  # RFC 6026: absorbed, the TU retransmits 2xx
    layer.respond(txn, response_to(req, 200, "us"), 0.6)  # the TU's own 2xx retransmission
    ack = request("ACK", new_branch(), to_tag="us")
    [passed] = layer.receive_request(ack, UDP, 0.7)
    assert isinstance(passed, RequestReceived)
    assert passed.transaction is None
    fired = run_until(layer, 40.0)
    assert [(t, type(a)) for t, a in fired] == [(32.1, Terminated)]  # Timer L
    with pytest.raises(TransactionStateError):
        layer.respond(txn, response_to(req, 486), 41.0)


# --- server non-INVITE (17.2.2) -----------------------------------------------------------------


@pytest.mark.parametrize(("dest", "timer_j"), [(UDP, 32.0), (TCP, 0.0)])
def test_server_non_invite_absorbs_and_resends_final(dest: Dest, timer_j: float) -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    [received] = layer.receive_request(req, dest, 0.0)
    assert received.transaction is not None
    assert layer.receive_request(req, dest, 0.1) == []  # Trying: absorbed
    final = transmits(layer.respond(received.transaction, response_to(req, 200), 0.2))
    assert transmits(layer.receive_request(req, dest, 0.3)) == final
    fired = run_until(layer, 100.0)
    assert [(t, type(a)) for t, a in fired] == [(pytest.approx(0.2 + timer_j), Terminated)]
    # After Timer J a retransmission would be a new request: the TU sees it.
    assert [type(a) for a in layer.receive_request(req, dest, 100.0)] == [RequestReceived]


# --- matching ---------------------------------------------------------------------------------


def test_cancel_finds_its_invite_and_is_its_own_transaction() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    [received] = layer.receive_request(invite, UDP, 0.0)
    cancel = request("CANCEL", invite.via.branch)
    [cancel_received] = layer.receive_request(cancel, UDP, 0.5)
    assert isinstance(cancel_received, RequestReceived)
    assert cancel_received.transaction is not received.transaction
    assert layer.find_invite(cancel) is received.transaction
    assert layer.find_invite(request("CANCEL")) is None


def test_rfc2543_requests_match_without_a_magic_cookie() -> None:
    layer = TransactionLayer()
    invite = request("INVITE", branch="oldstyle1")
    [received] = layer.receive_request(invite, UDP, 0.0)
    assert received.transaction is not None
    assert layer.receive_request(invite, UDP, 0.1) == []  # retransmission matched (17.2.3)
    layer.respond(received.transaction, response_to(invite, 404, "us"), 0.2)
    ack = request("ACK", branch="oldstyle1", to_tag="us")
    assert layer.receive_request(ack, UDP, 0.3) == []
    assert received.transaction.state is State.CONFIRMED


def test_responses_match_by_branch_and_method() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.send_request(req, UDP, 0.0)
    other = request("OPTIONS")
    [stray] = layer.receive_response(response_to(other, 200), UDP, 0.1)
    assert isinstance(stray, ResponseReceived)
    assert stray.transaction is None


def test_transport_failure_ends_the_transaction() -> None:
    layer = TransactionLayer()
    txn, _ = layer.send_request(request(), TCP, 0.0)
    assert [type(a) for a in layer.transport_failed(txn)] == [TransportFailed, Terminated]
    assert len(layer) == 0
    assert layer.transport_failed(txn) == []


def test_sent_requests_need_a_cookie_branch_and_ack_is_no_transaction() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="magic cookie"):
        layer.send_request(request(branch="nocookie"), UDP, 0.0)
    with pytest.raises(TransactionStateError):
        layer.send_request(request("ACK"), UDP, 0.0)


def test_many_transactions_keep_their_own_timers() -> None:
    layer = TransactionLayer()
    txns = [layer.send_request(request(), UDP, now=i * 0.01)[0] for i in range(1000)]
    assert not isinstance(txns[0], ClientInviteTransaction)
    fired = run_until(layer, 41.985)
    assert sum(isinstance(a, TimedOut) for _, a in fired) == 1000 - 1  # the last one starts at 9.99 s
    fired = run_until(layer, 42.0)
    assert sum(isinstance(a, TimedOut) for _, a in fired) == 1
    assert len(layer) == 0
