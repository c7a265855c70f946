"""The registrar (RFC 3261 10.3, RFC 5626) on a virtual clock."""

from __future__ import annotations

import pytest

from services.signaling.registrar import Refused, Registered, Registrar, RegistrarPolicy
from services.signaling.sip.message import Request, parse_message
from services.signaling.transport.flow import Flow, TransportKind

WS1 = Flow(TransportKind.WS, ("203.0.113.5", 50001), ("0.0.0.0", 8088), 1)
WS2 = Flow(TransportKind.WS, ("203.0.113.5", 50002), ("0.0.0.0", 8088), 2)
UDP = Flow(TransportKind.UDP, ("198.51.100.7", 5060), ("0.0.0.0", 5060))
AOR = "acme/a-1"


def register(
    contacts: list[str] | None = None,
    *,
    expires: int | None = None,
    call_id: str = "reg-1",
    cseq: int = 1,
    supported: str = "",
) -> Request:
    lines = [
        "REGISTER sip:acme.test SIP/2.0",
        "Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK1",
        "From: <sip:100@acme.test>;tag=t",
        "To: <sip:100@acme.test>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
    ]
    lines += [f"Contact: {c}" for c in contacts or []]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if supported:
        lines.append(f"Supported: {supported}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


BROWSER = '<sip:x7k2@a1b2.invalid;transport=ws>;+sip.instance="<urn:uuid:1111>";reg-id=1'


def test_register_lists_the_binding_with_its_expiry() -> None:
    registrar = Registrar()
    outcome = registrar.register(register(["<sip:100@198.51.100.7>"], expires=300), AOR, UDP, now=0.0)
    assert isinstance(outcome, Registered)
    [binding] = outcome.bindings
    assert (binding.remaining(0.0), binding.flow) == (300, UDP)
    assert outcome.added == (binding,)


def test_contact_expires_wins_over_the_header_and_long_ones_are_capped() -> None:
    registrar = Registrar(RegistrarPolicy(max_expires=3600))
    request = register(["<sip:a@h1>;expires=120", "<sip:b@h2>", "<sip:c@h3>;expires=99999"], expires=600)
    outcome = registrar.register(request, AOR, UDP, 0.0)
    assert isinstance(outcome, Registered)
    assert sorted(b.remaining(0.0) for b in outcome.bindings) == [120, 600, 3600]


def test_default_expiry_when_nobody_says() -> None:
    outcome = Registrar(RegistrarPolicy(default_expires=600)).register(register(["<sip:a@h>"]), AOR, UDP, 0.0)
    assert isinstance(outcome, Registered)
    assert outcome.bindings[0].remaining(0.0) == 600


def test_too_brief_gets_423_with_min_expires() -> None:
    registrar = Registrar(RegistrarPolicy(min_expires=60))
    outcome = registrar.register(register(["<sip:a@h>"], expires=30), AOR, UDP, 0)
    assert outcome == Refused(423, "Interval Too Brief", (("Min-Expires", "60"),))


def test_several_contacts_and_unregister_one() -> None:
    registrar = Registrar()
    registrar.register(register(["<sip:a@h1>", "<sip:b@h2>"], expires=300), AOR, UDP, 0.0)
    outcome = registrar.register(register(["<sip:a@h1>"], expires=0, cseq=2), AOR, UDP, 1.0)
    assert isinstance(outcome, Registered)
    assert [str(b.contact.uri) for b in outcome.bindings] == ["sip:b@h2"]
    assert [str(b.contact.uri) for b in outcome.removed] == ["sip:a@h1"]


def test_star_removes_everything_but_only_with_expires_zero() -> None:
    registrar = Registrar()
    registrar.register(register(["<sip:a@h1>", "<sip:b@h2>"], expires=300), AOR, UDP, 0.0)
    assert registrar.register(register(["*"], expires=60, cseq=2), AOR, UDP, 1.0) == Refused(
        400, "Contact * needs Expires: 0"
    )
    outcome = registrar.register(register(["*"], expires=0, cseq=3), AOR, UDP, 1.0)
    assert isinstance(outcome, Registered)
    assert (outcome.bindings, len(outcome.removed)) == ((), 2)


def test_query_without_contact_changes_nothing() -> None:
    registrar = Registrar()
    registrar.register(register(["<sip:a@h1>"], expires=300), AOR, UDP, 0.0)
    outcome = registrar.register(register(cseq=2), AOR, UDP, 1.0)
    assert isinstance(outcome, Registered)
    assert len(outcome.bindings) == 1
    assert outcome.added == outcome.removed == ()


def test_old_cseq_cannot_undo_a_newer_registration() -> None:
    registrar = Registrar()
    registrar.register(register(["<sip:a@h1>"], expires=300, cseq=5), AOR, UDP, 0.0)
    outcome = registrar.register(register(["<sip:a@h1>"], expires=0, cseq=4), AOR, UDP, 1.0)
    assert isinstance(outcome, Refused)
    assert outcome.status == 400
    assert len(registrar.bindings(AOR, 1.0)) == 1


def test_bindings_expire_on_the_clock() -> None:
    registrar = Registrar()
    registrar.register(register(["<sip:a@h1>;expires=100", "<sip:b@h2>;expires=200"]), AOR, UDP, 0.0)
    assert registrar.next_deadline() == 100.0
    assert registrar.expire(99.9) == []
    assert [str(b.contact.uri) for b in registrar.expire(100.0)] == ["sip:a@h1"]
    assert registrar.next_deadline() == 200.0
    assert len(registrar.expire(200.0)) == 1
    assert registrar.next_deadline() is None
    assert len(registrar) == 0


def test_refresh_moves_the_expiry() -> None:
    registrar = Registrar()
    registrar.register(register(["<sip:a@h1>"], expires=100), AOR, UDP, 0.0)
    registrar.register(register(["<sip:a@h1>"], expires=100, cseq=2), AOR, UDP, 90.0)
    assert registrar.expire(150.0) == []
    assert len(registrar.expire(190.0)) == 1


def test_browser_reconnecting_with_the_same_instance_replaces_its_flow() -> None:
    # RFC 5626: same +sip.instance and reg-id from a new WebSocket is the same agent, not a second one.
    registrar = Registrar()
    first = registrar.register(register([BROWSER], expires=600, supported="outbound"), AOR, WS1, 0.0)
    assert isinstance(first, Registered)
    assert first.outbound
    again = BROWSER.replace("x7k2@a1b2", "zz99@c3d4")  # SIP.js makes a new random Contact
    second = registrar.register(register([again], expires=600, call_id="reg-2"), AOR, WS2, 10.0)
    assert isinstance(second, Registered)
    [binding] = second.bindings
    assert binding.flow == WS2
    assert [b.flow for b in second.removed] == [WS1]


def test_closed_connection_takes_its_bindings_away() -> None:
    registrar = Registrar()
    registrar.register(register([BROWSER], expires=600), AOR, WS1, 0.0)
    registrar.register(register(["<sip:a@h1>"], expires=600), "acme/a-2", UDP, 0.0)
    gone = registrar.flow_closed(WS1)
    assert [b.aor for b in gone] == [AOR]
    assert registrar.bindings(AOR, 1.0) == ()
    assert len(registrar.bindings("acme/a-2", 1.0)) == 1


def test_contact_limit_per_agent() -> None:
    registrar = Registrar(RegistrarPolicy(max_contacts_per_aor=2))
    registrar.register(register(["<sip:a@h1>", "<sip:b@h2>"], expires=300), AOR, UDP, 0.0)
    outcome = registrar.register(register(["<sip:c@h3>"], expires=300, cseq=2), AOR, UDP, 1.0)
    assert isinstance(outcome, Refused)
    assert outcome.status == 403


@pytest.mark.parametrize("bad", ["<sip:a@h1>;expires=abc", "not a contact <"])
def test_malformed_contact_is_a_400(bad: str) -> None:
    outcome = Registrar().register(register([bad], expires=300), AOR, UDP, 0.0)
    assert isinstance(outcome, Refused)
    assert outcome.status == 400
