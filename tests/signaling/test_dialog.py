"""Dialogs (RFC 3261 12): creation on both sides, in-dialog requests, routing, ordering."""

from __future__ import annotations

import pytest

from services.signaling.sip.dialog import Dialog, DialogError, DialogState, dialog_id_of
from services.signaling.sip.message import Request, Response, make_response, parse_message
from services.signaling.sip.uri import parse_uri


def parse(text: str) -> Request | Response:
    return parse_message(text.replace("\n", "\r\n").encode())


INVITE = """INVITE sip:+995555123456@carrier.test SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1
Max-Forwards: 70
From: <sip:100@acme.test>;tag=ours
To: <sip:+995555123456@carrier.test>
Call-ID: call-1
CSeq: 7 INVITE
Contact: <sip:gw@192.0.2.10:5060>
Content-Length: 0

"""


def ok_for(
    invite: Request, *, record_route: list[str], contact: str = "<sip:peer@198.51.100.2:5070>"
) -> Response:
    response = make_response(invite, 200, to_tag="theirs")
    for route in record_route:
        response.headers.add("Record-Route", route)
    response.headers.add("Contact", contact)
    return response


def invite() -> Request:
    message = parse(INVITE)
    assert isinstance(message, Request)
    return message


def test_uac_dialog_takes_target_routes_and_tags_from_the_2xx() -> None:
    request = invite()
    ok = ok_for(request, record_route=["<sip:p2.carrier.test;lr>", "<sip:p1.carrier.test;lr>"])
    dialog = Dialog.as_uac(request, ok, "<sip:gw@192.0.2.10:5060>")
    assert (dialog.call_id, dialog.local_tag, dialog.remote_tag) == ("call-1", "ours", "theirs")
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.remote_target) == "sip:peer@198.51.100.2:5070"
    # The UAC reverses Record-Route (12.1.2): the proxy nearest to us comes first.
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p1.carrier.test;lr", "sip:p2.carrier.test;lr"]
    assert dialog_id_of(ok, ours=True) == dialog.id


def test_bye_goes_to_the_target_through_the_routes_with_the_next_cseq() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, ok_for(request, record_route=["<sip:p1.carrier.test;lr>"]), "<sip:gw@h>")
    bye = dialog.request("BYE", via_host="192.0.2.10:5060", transport="udp")
    assert str(bye.uri) == "sip:peer@198.51.100.2:5070"
    assert [str(r.uri) for r in bye.routes] == ["sip:p1.carrier.test;lr"]
    assert (bye.cseq.seq, bye.cseq.method) == (8, "BYE")
    assert (bye.from_.tag, bye.to.tag, bye.call_id) == ("ours", "theirs", "call-1")
    assert bye.via.branch is not None
    assert bye.via.branch.startswith("z9hG4bK")
    again = parse_message(bye.encode())
    assert isinstance(again, Request)
    assert again.cseq.seq == 8


def test_ack_for_2xx_repeats_the_invite_cseq_with_a_new_branch() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, ok_for(request, record_route=[]), "<sip:gw@h>")
    ack = dialog.ack(via_host="192.0.2.10:5060", transport="udp")
    assert (ack.method, ack.cseq.seq, ack.cseq.method) == ("ACK", 7, "ACK")
    assert ack.via.branch != request.via.branch
    # A re-INVITE later: its ACK repeats the re-INVITE's CSeq.
    dialog.request("INVITE", via_host="h", transport="udp")
    dialog.invite_sent()
    assert dialog.ack(via_host="h", transport="udp").cseq.seq == 8


def test_strict_router_goes_in_the_request_uri() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, ok_for(request, record_route=["<sip:strict.carrier.test>"]), "<sip:gw@h>")
    bye = dialog.request("BYE", via_host="h", transport="udp")
    assert str(bye.uri) == "sip:strict.carrier.test"
    assert [str(r.uri) for r in bye.routes] == ["sip:peer@198.51.100.2:5070"]


def test_2xx_without_contact_is_refused() -> None:
    request = invite()
    with pytest.raises(DialogError, match="Contact"):
        Dialog.as_uac(request, make_response(request, 200, to_tag="t"), "<sip:gw@h>")


def test_uas_dialog_checks_order_and_follows_target_refresh() -> None:
    incoming = parse(
        INVITE.replace("tag=ours", "tag=caller").replace(
            "Contact: <sip:gw@192.0.2.10:5060>", "Contact: <sip:a@10.1.1.1>"
        )
    )
    assert isinstance(incoming, Request)
    incoming.headers.add("Record-Route", "<sip:edge.test;lr>")
    dialog = Dialog.as_uas(incoming, "callee", "<sip:gw@h>", confirmed=True)
    assert dialog.route_set[0].uri == parse_uri("sip:edge.test;lr")
    assert dialog.remote_seq == 7
    assert dialog.local_uri.tag == "callee"
    reinvite = parse(
        INVITE.replace("tag=ours", "tag=caller")
        .replace("CSeq: 7", "CSeq: 8")
        .replace("To: <sip:+995555123456@carrier.test>", "To: <sip:+995555123456@carrier.test>;tag=callee")
        .replace("Contact: <sip:gw@192.0.2.10:5060>", "Contact: <sip:a@10.9.9.9>")
    )
    assert isinstance(reinvite, Request)
    dialog.accept_request(reinvite)
    assert str(dialog.remote_target) == "sip:a@10.9.9.9"
    assert dialog_id_of(reinvite, ours=False) == dialog.id
    with pytest.raises(DialogError, match="not above"):
        dialog.accept_request(reinvite)  # the same CSeq again: out of order (12.2.2)


def test_terminated_dialog_builds_no_requests() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, ok_for(request, record_route=[]), "<sip:gw@h>")
    dialog.terminate()
    with pytest.raises(DialogError):
        dialog.request("BYE", via_host="h", transport="udp")
