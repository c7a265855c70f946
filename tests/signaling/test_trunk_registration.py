"""Trunk registration with a carrier (RFC 3261 10.2) and OPTIONS keep-alive, on a virtual clock.

The carrier is a real DigestServer behind responses built with make_response; every request and
response goes through encode() and parse_message(), as it would over the wire.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.signaling.sip import Request, Response, make_response, parse_message
from services.signaling.sip.auth import Algorithm, DigestOk, DigestServer, ha1
from services.signaling.trunk.registration import (
    AUTH_FAILED,
    Action,
    Backoff,
    Purpose,
    RegistrationClient,
    SendRequest,
    TrunkConfig,
    TrunkStatus,
    refresh_delay,
)
from shared.events import TrunkRegistrationData, TrunkState

T0 = 10_000.0
REALM = "carrier.test"
SECRET = b"carrier-nonce-secret-0123456789"
PASSWORD = "correct horse battery"
USER = "4420700001"
CONTACT = "sip:echodesk@203.0.113.5:5060"


def trunk(**overrides: object) -> TrunkConfig:
    fields: dict[str, object] = {
        "trunk_id": "carrier-1",
        "registrar_host": "sip.carrier.test",
        "contact": CONTACT,
        "aor_user": USER,
        "aor_domain": "carrier.test",
        "password": PASSWORD,
    }
    fields.update(overrides)
    return TrunkConfig(**fields)  # type: ignore[arg-type]


def client(config: TrunkConfig | None = None, seed: int = 7, **kwargs: object) -> RegistrationClient:
    return RegistrationClient(config or trunk(), rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]


def sends(actions: Iterable[Action]) -> list[SendRequest]:
    return [a for a in actions if isinstance(a, SendRequest)]


def statuses(actions: Iterable[Action]) -> list[TrunkStatus]:
    return [a for a in actions if isinstance(a, TrunkStatus)]


def only_send(actions: Sequence[Action]) -> SendRequest:
    found = sends(actions)
    assert len(found) == 1, actions
    return found[0]


def finished(c: RegistrationClient) -> bool:
    # A function, not the property, so that mypy does not carry one assert's narrowing to the next.
    return c.finished


def wire(request: Request) -> Request:
    parsed = parse_message(request.encode())
    assert isinstance(parsed, Request)
    return parsed


def reply(send: SendRequest, status: int, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """The carrier's answer to ``send``, as it arrives off the wire."""
    response = make_response(wire(send.request), status, headers=list(headers))
    parsed = parse_message(response.encode())
    assert isinstance(parsed, Response)
    return parsed


class Carrier:
    """A registrar: challenges, checks credentials with a real DigestServer, grants bindings."""

    def __init__(self, password: str = PASSWORD, *, grant: int | None = None, proxy: bool = False) -> None:
        self.server = DigestServer(REALM, SECRET, algorithms=(Algorithm.SHA256, Algorithm.MD5), proxy=proxy)
        self.stored = {a: ha1(USER, REALM, password, a) for a in (Algorithm.SHA256, Algorithm.MD5)}
        self.grant = grant

    def lookup(self, username: str, algorithm: Algorithm) -> str | None:
        return self.stored.get(algorithm) if username == USER else None

    def answer(self, send: SendRequest, now: float, *, stale: bool = False) -> Response:
        request = wire(send.request)
        credentials = request.headers.get(self.server.credentials_header)
        if credentials is not None and not stale:
            result = self.server.verify(credentials, request.method, now, self.lookup)
            if isinstance(result, DigestOk):
                expires = request.expires or 0
                granted = expires if self.grant is None else min(expires, self.grant)
                return reply(send, 200, [("Contact", f"<{CONTACT}>;expires={granted}")])
        challenges = self.server.challenges(now, stale=stale)
        return reply(send, self.server.status_code, [(self.server.challenge_header, c) for c in challenges])


def register(c: RegistrationClient, carrier: Carrier, now: float = T0) -> list[Action]:
    """Start ``c`` and take it through challenge and 200; every action, in order."""
    actions = c.start(now)
    first = only_send(actions)
    actions += c.on_response(carrier.answer(first, now), now)
    second = sends(actions)[-1]
    actions += c.on_response(carrier.answer(second, now), now)
    return actions


# --- the REGISTER on the wire -----------------------------------------------------------------------


def test_first_register_follows_rfc3261_10_2() -> None:
    c = client()
    actions = c.start(T0)
    assert statuses(actions) == [
        TrunkStatus(TrunkState.REGISTERING, "sip:sip.carrier.test:5060;transport=udp")
    ]
    send = only_send(actions)
    assert (send.host, send.port, send.transport, send.purpose) == (
        "sip.carrier.test",
        5060,
        "udp",
        Purpose.REGISTER,
    )
    request = wire(send.request)
    assert request.method == "REGISTER"
    assert str(request.uri) == "sip:carrier.test"
    assert str(request.to.uri) == f"sip:{USER}@carrier.test"
    assert request.to.tag is None
    assert str(request.from_.uri) == f"sip:{USER}@carrier.test"
    assert request.from_.tag
    assert request.cseq.seq == 1
    assert request.cseq.method == "REGISTER"
    assert request.max_forwards == 70
    contacts = request.contacts
    assert contacts != "*"
    assert len(contacts) == 1
    assert str(contacts[0].uri) == CONTACT
    assert contacts[0].expires == 3600
    assert request.expires == 3600
    assert request.headers.get("User-Agent") == "EchoDesk Voice"
    assert "Authorization" not in request.headers
    via = request.via
    assert via.branch is not None
    assert via.branch.startswith("z9hG4bK")
    assert len(via.branch) > 16
    assert via.transport == "UDP"
    assert via.host == "203.0.113.5"
    assert via.port == 5060
    assert via.rport_requested
    assert c.next_deadline() == T0 + 40.0  # only the guard for a lost outcome


def test_challenge_then_200_registers_with_the_same_call_id() -> None:
    c = client()
    carrier = Carrier()
    actions = register(c, carrier)
    first, second = sends(actions)
    assert wire(second.request).call_id == wire(first.request).call_id
    assert wire(second.request).cseq.seq == 2
    assert wire(second.request).from_.tag == wire(first.request).from_.tag
    assert first.request.via.branch != second.request.via.branch
    assert [s.state for s in statuses(actions)] == [TrunkState.REGISTERING, TrunkState.REGISTERED]
    registered = statuses(actions)[-1]
    assert registered.sip_status == 200
    assert registered.expires_s == 3600
    assert registered.reason is None
    assert c.status == registered


def test_tls_trunk_defaults_to_5061_and_says_so_in_via() -> None:
    c = client(trunk(transport="tls", registrar_port=None))
    send = only_send(c.start(T0))
    assert (send.port, send.transport) == (5061, "tls")
    assert send.request.via.transport == "TLS"


def test_ha1_instead_of_a_password() -> None:
    c = client(trunk(password=None, ha1={Algorithm.SHA256: ha1(USER, REALM, PASSWORD, Algorithm.SHA256)}))
    actions = register(c, Carrier())
    assert statuses(actions)[-1].state is TrunkState.REGISTERED


def test_separate_auth_username_is_the_one_sent() -> None:
    c = client(trunk(auth_username="auth-7"))
    send = only_send(c.start(T0))
    carrier = Carrier()
    retry = only_send(c.on_response(carrier.answer(send, T0), T0))
    assert 'username="auth-7"' in (wire(retry.request).headers.get("Authorization") or "")


# --- authentication failures ----------------------------------------------------------------------


def test_wrong_password_fails_after_one_retry() -> None:
    c = client(trunk(password="wrong"))
    carrier = Carrier()
    actions = c.start(T0)
    first = only_send(actions)
    retry = only_send(c.on_response(carrier.answer(first, T0), T0))
    assert "Authorization" in retry.request.headers
    actions = c.on_response(carrier.answer(retry, T0), T0)
    assert sends(actions) == []
    [failed] = statuses(actions)
    assert failed.state is TrunkState.FAILED
    assert failed.reason == AUTH_FAILED
    assert failed.sip_status == 401
    assert failed.retry_in_s is not None
    assert 5.0 <= failed.retry_in_s <= 30.0
    assert c.next_deadline() == pytest.approx(T0 + failed.retry_in_s)
    # The retry starts again without credentials.
    again = only_send(c.on_timer(T0 + failed.retry_in_s))
    assert "Authorization" not in again.request.headers
    assert again.request.cseq.seq == 3


def test_stale_nonce_is_answered_again_not_a_failure() -> None:
    c = client()
    carrier = Carrier()
    first = only_send(c.start(T0))
    retry = only_send(c.on_response(carrier.answer(first, T0), T0))
    again = only_send(c.on_response(carrier.answer(retry, T0, stale=True), T0))
    assert again.request.cseq.seq == 3
    actions = c.on_response(carrier.answer(again, T0), T0)
    assert [s.state for s in statuses(actions)] == [TrunkState.REGISTERED]


def test_endless_stale_challenges_end_as_an_authentication_failure() -> None:
    c = client()
    carrier = Carrier()
    send = only_send(c.start(T0))
    send = only_send(c.on_response(carrier.answer(send, T0), T0))
    for _ in range(3):
        send = only_send(c.on_response(carrier.answer(send, T0, stale=True), T0))
    actions = c.on_response(carrier.answer(send, T0, stale=True), T0)
    assert sends(actions) == []
    assert statuses(actions)[0].reason == AUTH_FAILED


def test_proxy_407_then_registrar_401_are_both_answered() -> None:
    c = client()
    proxy = Carrier(proxy=True)
    registrar = Carrier()
    send = only_send(c.start(T0))
    send = only_send(c.on_response(proxy.answer(send, T0), T0))
    assert "Proxy-Authorization" in send.request.headers
    # The proxy lets it through; the registrar challenges.
    send = only_send(c.on_response(registrar.answer(send, T0), T0))
    request = wire(send.request)
    assert "Proxy-Authorization" in request.headers
    assert "Authorization" in request.headers
    proxy_ok = proxy.server.verify(
        request.headers.get("Proxy-Authorization") or "", "REGISTER", T0, proxy.lookup
    )
    assert isinstance(proxy_ok, DigestOk)
    assert proxy_ok.nc == 2
    actions = c.on_response(registrar.answer(send, T0), T0)
    assert statuses(actions)[-1].state is TrunkState.REGISTERED


def test_reused_proxy_credentials_refused_are_answered_anew() -> None:
    c = client()
    proxy = Carrier(proxy=True)
    registrar = Carrier()
    send = only_send(c.start(T0))
    send = only_send(c.on_response(proxy.answer(send, T0), T0))
    send = only_send(c.on_response(registrar.answer(send, T0), T0))
    # A proxy that takes each nonce once challenges the carried-over credentials (not stale).
    send = only_send(c.on_response(_challenge(proxy, send), T0))
    request = wire(send.request)
    assert "Proxy-Authorization" in request.headers
    assert "Authorization" in request.headers
    assert request.cseq.seq == 4


def _challenge(carrier: Carrier, send: SendRequest) -> Response:
    server = carrier.server
    return reply(send, server.status_code, [(server.challenge_header, v) for v in server.challenges(T0)])


def test_challenge_without_configured_secrets() -> None:
    c = client(trunk(password=None))
    send = only_send(c.start(T0))
    [failed] = statuses(c.on_response(Carrier().answer(send, T0), T0))
    assert failed.state is TrunkState.FAILED
    assert failed.sip_status == 401
    assert failed.reason == "The carrier asks for credentials (401 Unauthorized) but the trunk has none"


def test_challenge_we_cannot_answer() -> None:
    c = client(trunk(realm="other.realm"))
    send = only_send(c.start(T0))
    [failed] = statuses(c.on_response(Carrier().answer(send, T0), T0))
    assert failed.reason is not None
    assert failed.reason.startswith("The carrier asks for authentication we cannot")


def test_carrier_that_registers_without_authentication() -> None:
    c = client(trunk(password=None))
    send = only_send(c.start(T0))
    [registered] = statuses(c.on_response(reply(send, 200, [("Expires", "1800")]), T0))
    assert registered.expires_s == 1800


# --- 423 and the granted interval -----------------------------------------------------------------


def test_423_retries_with_min_expires_and_refreshes_keep_it() -> None:
    c = client(trunk(password=None, expires_s=60, keepalive_s=0))
    send = only_send(c.start(T0))
    actions = c.on_response(reply(send, 423, [("Min-Expires", "300")]), T0)
    assert statuses(actions) == []
    retry = only_send(actions)
    request = wire(retry.request)
    assert request.expires == 300
    assert request.contacts != "*"
    assert request.contacts[0].expires == 300
    assert request.cseq.seq == 2
    [registered] = statuses(c.on_response(reply(retry, 200, [("Contact", f"<{CONTACT}>;expires=300")]), T0))
    assert registered.expires_s == 300
    refresh = only_send(c.on_timer(T0 + refresh_delay(300)))
    assert wire(refresh.request).expires == 300


@pytest.mark.parametrize("headers", [[], [("Min-Expires", "60")], [("Min-Expires", "soon")]])
def test_423_that_cannot_be_met_fails(headers: list[tuple[str, str]]) -> None:
    c = client(trunk(password=None, expires_s=60))
    send = only_send(c.start(T0))
    actions = c.on_response(reply(send, 423, headers), T0)
    assert sends(actions) == []
    [failed] = statuses(actions)
    assert failed.sip_status == 423
    assert failed.state is TrunkState.FAILED


def test_lower_expiry_granted_by_contact_parameter_is_used() -> None:
    c = client(trunk(keepalive_s=0))
    actions = register(c, Carrier(grant=600))
    assert statuses(actions)[-1].expires_s == 600
    assert c.next_deadline() == pytest.approx(T0 + 540)


@pytest.mark.parametrize(
    ("headers", "granted"),
    [
        # Our Contact, with parameters the registrar added, and another device's binding.
        (
            [
                (
                    "Contact",
                    "<sip:other@198.51.100.9>;expires=30, <sip:echodesk@203.0.113.5:5060;ob>;expires=900",
                )
            ],
            900,
        ),
        ([("Contact", "<sip:other@198.51.100.9>;expires=30"), ("Expires", "1200")], 1200),
        ([], 3600),
        ([("Expires", "7200")], 3600),  # never longer than we asked for
        ([("Contact", "<sip:echodesk@203.0.113.5:5060>;expires=oops"), ("Expires", "450")], 450),
    ],
)
def test_granted_interval(headers: list[tuple[str, str]], granted: int) -> None:
    c = client(trunk(password=None))
    send = only_send(c.start(T0))
    [registered] = statuses(c.on_response(reply(send, 200, headers), T0))
    assert registered.expires_s == granted


def test_200_that_keeps_no_binding_is_a_failure() -> None:
    c = client(trunk(password=None))
    send = only_send(c.start(T0))
    [failed] = statuses(c.on_response(reply(send, 200, [("Contact", f"<{CONTACT}>;expires=0")]), T0))
    assert failed.state is TrunkState.FAILED
    assert failed.sip_status == 200


# --- refresh --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "after"), [(3600, 3240.0), (600, 540.0), (120, 60.0), (60, 30.0), (10, 5.0), (86400, 77760.0)]
)
def test_refresh_delay(granted: int, after: float) -> None:
    assert refresh_delay(granted) == after


@given(st.integers(min_value=1, max_value=2**32 - 1))
def test_refresh_leaves_margin_and_never_comes_before_half(granted: int) -> None:
    delay = refresh_delay(granted)
    assert granted / 2 <= delay < granted
    assert granted - delay >= min(60.0, granted / 2)


def test_refresh_keeps_call_id_and_tag_and_reports_nothing_new() -> None:
    c = client()
    carrier = Carrier()
    first = sends(register(c, carrier))[0]
    assert c.next_deadline() == pytest.approx(T0 + 30.0)  # the first OPTIONS comes before the refresh
    at = T0 + 3240.0
    # Keep the probe quiet: answer every OPTIONS until the refresh is due.
    now = T0
    while True:
        deadline = c.next_deadline()
        assert deadline is not None
        if deadline >= at:
            break
        now = deadline
        for send in sends(c.on_timer(now)):
            assert send.purpose is Purpose.KEEPALIVE
            assert c.on_response(reply(send, 200), now) == []
    # 3240 s is also a multiple of the probe interval: the OPTIONS goes out alongside.
    [refresh] = [s for s in sends(c.on_timer(at)) if s.purpose is Purpose.REGISTER]
    request = wire(refresh.request)
    assert request.call_id == wire(first.request).call_id
    assert request.from_.tag == wire(first.request).from_.tag
    assert request.cseq.seq == 3
    actions = c.on_response(carrier.answer(refresh, at), at)
    retry = only_send(actions)
    actions = c.on_response(carrier.answer(retry, at), at)
    assert statuses(actions) == []  # still registered, same interval: no event
    assert c.status is not None
    assert c.status.state is TrunkState.REGISTERED


# --- failures and backoff -------------------------------------------------------------------------


def test_timeouts_back_off_with_seeded_jitter_up_to_the_cap() -> None:
    c = client(seed=42)
    expected_rng = random.Random(42)
    backoff = Backoff()
    now = T0
    send = only_send(c.start(now))
    delays = []
    for attempt in range(10):
        [failed] = statuses(c.on_timeout(send.request, now))
        assert failed.state is TrunkState.FAILED
        assert failed.sip_status == 408
        assert failed.reason == "The carrier's registrar did not answer (408 Request Timeout)"
        expected = backoff.delay(attempt, expected_rng)
        assert failed.retry_in_s == expected
        assert 5.0 <= expected <= min(1800.0, 30.0 * 2**attempt)
        delays.append(expected)
        now += expected
        assert c.next_deadline() == pytest.approx(now)
        assert c.on_timer(now - 0.001) == []
        send = only_send(c.on_timer(now))
        assert send.request.cseq.seq == attempt + 2
    assert max(delays) > 300  # it does grow
    assert all(d <= 1800.0 for d in delays)


def test_backoff_cap_and_floor_reached_with_extreme_draws() -> None:
    class Extreme(random.Random):
        def __init__(self, pick: float) -> None:
            super().__init__()
            self.pick = pick

        def uniform(self, a: float, b: float) -> float:
            return a + (b - a) * self.pick

    backoff = Backoff()
    assert [backoff.delay(n, Extreme(1.0)) for n in range(8)] == [30, 60, 120, 240, 480, 960, 1800, 1800]
    assert backoff.delay(0, Extreme(0.0)) == 5.0
    assert backoff.delay(10_000, Extreme(1.0)) == 1800.0
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=0)
    with pytest.raises(ValueError, match="floor_s"):
        Backoff(floor_s=5000)


@given(
    attempt=st.integers(min_value=0, max_value=100_000),
    seed=st.integers(),
    base=st.floats(min_value=0.001, max_value=600),
    cap=st.floats(min_value=600, max_value=1e9),
    floor=st.floats(min_value=0, max_value=600),
)
def test_backoff_is_always_within_zero_and_cap(
    attempt: int, seed: int, base: float, cap: float, floor: float
) -> None:
    backoff = Backoff(base_s=base, cap_s=cap, floor_s=floor)
    delay = backoff.delay(attempt, random.Random(seed))
    assert 0.0 <= floor <= delay <= cap
    assert delay <= max(floor, base * 2.0 ** min(attempt, 1000))


def test_success_resets_the_backoff() -> None:
    c = client(seed=1)
    carrier = Carrier()
    now = T0
    send = only_send(c.start(now))
    for _ in range(5):
        c.on_timeout(send.request, now)
        deadline = c.next_deadline()
        assert deadline is not None
        now = deadline
        send = only_send(c.on_timer(now))
    retry = only_send(c.on_response(carrier.answer(send, now), now))
    assert statuses(c.on_response(carrier.answer(retry, now), now))[-1].state is TrunkState.REGISTERED
    # The next failure starts from the first step again: at most base_s, not 30 * 2**5.
    c.reconfigure(trunk(keepalive_s=0), now)
    later = now + refresh_delay(3600)
    refresh = only_send(c.on_timer(later))
    [failed] = statuses(c.on_response(reply(refresh, 500), later))
    assert failed.retry_in_s is not None
    assert failed.retry_in_s <= 30.0


def test_503_retry_after_is_honoured_exactly() -> None:
    c = client()
    send = only_send(c.start(T0))
    [failed] = statuses(
        c.on_response(reply(send, 503, [("Retry-After", "120 (maintenance);duration=600")]), T0)
    )
    assert failed.sip_status == 503
    assert failed.retry_in_s == 120.0
    assert failed.reason == "The carrier is unavailable for now (503 Service Unavailable)"
    assert c.next_deadline() == T0 + 120.0
    assert c.on_timer(T0 + 119.9) == []
    assert only_send(c.on_timer(T0 + 120.0)).purpose is Purpose.REGISTER


@pytest.mark.parametrize(("value", "delay"), [("0", 5.0), ("999999999", 86400.0)])
def test_retry_after_is_bounded(value: str, delay: float) -> None:
    c = client()
    send = only_send(c.start(T0))
    [failed] = statuses(c.on_response(reply(send, 503, [("Retry-After", value)]), T0))
    assert failed.retry_in_s == delay


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (403, "The carrier refused the registration (403 Forbidden): check the username and the account"),
        (404, "The carrier does not know this account (404 Not Found): check the user and the domain"),
        (500, "The carrier's registrar failed (500 Server Internal Error)"),
        (503, "The carrier is unavailable for now (503 Service Unavailable)"),
        (603, "The carrier declined the registration (603 Decline)"),
        (
            302,
            "The carrier redirected the registration (302 Moved Temporarily), which a trunk does not follow",
        ),
        (400, "The carrier rejected the registration (400 Bad Request)"),
    ],
)
def test_refusals_fail_with_status_and_a_human_reason(status: int, reason: str) -> None:
    c = client()
    send = only_send(c.start(T0))
    actions = c.on_response(reply(send, status), T0)
    assert sends(actions) == []
    [failed] = statuses(actions)
    assert (failed.state, failed.sip_status, failed.reason) == (TrunkState.FAILED, status, reason)
    assert failed.retry_in_s is not None
    assert 5.0 <= failed.retry_in_s <= 30.0


def test_transport_error_fails_without_a_sip_status() -> None:
    c = client()
    send = only_send(c.start(T0))
    [failed] = statuses(c.on_transport_error(send.request, T0, "connection refused"))
    assert failed.sip_status is None
    assert failed.reason == "Could not reach the carrier's registrar: connection refused"


def test_lost_outcome_is_a_timeout_after_the_guard() -> None:
    c = client(request_guard_s=40.0)
    only_send(c.start(T0))
    assert c.on_timer(T0 + 39.9) == []
    [failed] = statuses(c.on_timer(T0 + 40.0))
    assert failed.sip_status == 408


def test_repeated_failures_report_each_new_retry_once() -> None:
    c = client(seed=3)
    now = T0
    send = only_send(c.start(now))
    reported: list[TrunkStatus] = []
    for _ in range(4):
        reported += statuses(c.on_response(reply(send, 403), now))
        deadline = c.next_deadline()
        assert deadline is not None
        now = deadline
        actions = c.on_timer(now)
        assert statuses(actions) == []  # retrying does not flip the state back to registering
        send = only_send(actions)
    assert len(reported) == 4
    assert all(a != b for a, b in itertools.pairwise(reported))


def test_provisional_stray_and_late_responses_are_ignored() -> None:
    c = client()
    send = only_send(c.start(T0))
    assert c.on_response(reply(send, 100), T0) == []
    stranger = reply(send, 200)
    stranger.headers.set("Call-ID", "not-ours")
    assert c.on_response(stranger, T0) == []
    broken = reply(send, 200)
    broken.headers.set("CSeq", "many")
    assert c.on_response(broken, T0) == []
    c.on_timeout(send.request, T0)
    assert c.on_response(reply(send, 200), T0 + 1) == []  # already timed out
    assert c.on_timeout(send.request, T0 + 1) == []


# --- keep-alive -----------------------------------------------------------------------------------


def test_options_keepalive_while_registered() -> None:
    c = client()
    register(c, Carrier())
    assert c.next_deadline() == pytest.approx(T0 + 30.0)
    probe = only_send(c.on_timer(T0 + 30.0))
    assert probe.purpose is Purpose.KEEPALIVE
    request = wire(probe.request)
    assert request.method == "OPTIONS"
    assert str(request.uri) == "sip:sip.carrier.test"
    assert str(request.from_.uri) == f"sip:{USER}@carrier.test"
    assert request.from_.tag
    assert request.cseq.method == "OPTIONS"
    assert request.max_forwards == 70
    assert request.headers.get("Accept") == "application/sdp"
    # Any answer proves the carrier's SIP stack is there, even a refusal.
    assert c.on_response(reply(probe, 404), T0 + 30.2) == []
    assert c.next_deadline() == pytest.approx(T0 + 60.0)
    second = only_send(c.on_timer(T0 + 60.0))
    assert wire(second.request).call_id != request.call_id


def test_options_failures_mark_failed_and_register_again() -> None:
    c = client()
    carrier = Carrier()
    register(c, carrier)
    now = T0 + 30.0
    probe = only_send(c.on_timer(now))
    for _ in range(2):
        # Timer F fires 32 s after the send; the next probe, due 30 s after it, goes out at once.
        now += 32.0
        actions = c.on_timeout(probe.request, now)
        assert statuses(actions) == []
        probe = only_send(actions)
        assert probe.purpose is Purpose.KEEPALIVE
    now += 32.0
    actions = c.on_timeout(probe.request, now)
    [failed] = statuses(actions)
    assert failed.state is TrunkState.FAILED
    assert failed.reason == "The carrier stopped answering keep-alive OPTIONS (3 in a row); registering again"
    assert failed.sip_status == 408
    assert failed.retry_in_s == 0.0
    again = only_send(actions)
    assert again.purpose is Purpose.REGISTER
    retry = only_send(c.on_response(carrier.answer(again, now), now))
    [registered] = statuses(c.on_response(carrier.answer(retry, now), now))
    assert registered.state is TrunkState.REGISTERED
    assert c.next_deadline() == pytest.approx(now + 30.0)  # probing again


def test_an_answer_resets_the_failure_count() -> None:
    c = client()
    register(c, Carrier())
    now = T0 + 30.0
    for outcome in ("timeout", "timeout", "answer", "timeout", "timeout"):
        probe = only_send(c.on_timer(now))
        if outcome == "timeout":
            assert c.on_transport_error(probe.request, now, "ICMP unreachable") == []
        else:
            assert c.on_response(reply(probe, 200), now) == []
        now += 30.0
    assert c.status is not None
    assert c.status.state is TrunkState.REGISTERED


def test_no_options_while_failed() -> None:
    c = client()
    send = only_send(c.start(T0))
    c.on_response(reply(send, 403), T0)
    deadline = c.next_deadline()
    assert deadline is not None
    assert all(s.purpose is Purpose.REGISTER for s in sends(c.on_timer(deadline)))


def test_ip_authenticated_trunk_only_probes() -> None:
    c = client(trunk(register=False, aor_user="", password=None))
    actions = c.start(T0)
    assert statuses(actions) == []
    probe = only_send(actions)
    assert probe.purpose is Purpose.KEEPALIVE
    assert str(wire(probe.request).from_.uri) == "sip:203.0.113.5:5060"
    [up] = statuses(c.on_response(reply(probe, 200), T0))
    assert up == TrunkStatus(TrunkState.REGISTERED, "sip:sip.carrier.test:5060;transport=udp")
    now = T0
    reported: list[TrunkStatus] = []
    for _ in range(5):
        now += 30.0
        probe = only_send(c.on_timer(now))
        assert probe.purpose is Purpose.KEEPALIVE
        reported += statuses(c.on_timeout(probe.request, now))
    assert len(reported) == 1  # failed once, not once per further failure
    assert reported[0].state is TrunkState.FAILED
    assert reported[0].reason == "The carrier does not answer OPTIONS (3 in a row)"
    assert reported[0].retry_in_s == 30.0
    now += 30.0
    probe = only_send(c.on_timer(now))
    assert [s.state for s in statuses(c.on_response(reply(probe, 200), now))] == [TrunkState.REGISTERED]
    assert c.stop(now) == [TrunkStatus(TrunkState.UNREGISTERED, "sip:sip.carrier.test:5060;transport=udp")]
    assert c.finished


def test_trunk_without_registration_or_probe_is_usable_at_once() -> None:
    c = client(trunk(register=False, keepalive_s=0))
    assert [s.state for s in statuses(c.start(T0))] == [TrunkState.REGISTERED]
    assert c.next_deadline() is None


def test_probe_answer_after_keepalive_was_switched_off_is_ignored() -> None:
    c = client()
    register(c, Carrier())
    probe = only_send(c.on_timer(T0 + 30.0))
    assert c.reconfigure(trunk(keepalive_s=0, keepalive_failures=1), T0 + 31.0) == []
    assert c.on_timeout(probe.request, T0 + 62.0) == []
    assert c.status is not None
    assert c.status.state is TrunkState.REGISTERED
    assert c.next_deadline() == pytest.approx(T0 + 3240.0)


def test_keepalive_off_means_no_options() -> None:
    c = client(trunk(keepalive_s=0))
    register(c, Carrier())
    assert c.next_deadline() == pytest.approx(T0 + 3240.0)


# --- stop -----------------------------------------------------------------------------------------


def test_stop_removes_only_our_binding_and_reports_unregistered() -> None:
    c = client()
    carrier = Carrier()
    first = sends(register(c, carrier))[0]
    actions = c.stop(T0 + 100)
    assert statuses(actions) == []
    remove = only_send(actions)
    assert remove.purpose is Purpose.UNREGISTER
    request = wire(remove.request)
    assert request.expires == 0
    contacts = request.contacts
    assert contacts != "*"
    assert str(contacts[0].uri) == CONTACT
    assert contacts[0].expires == 0
    assert request.call_id == wire(first.request).call_id
    assert request.cseq.seq == 3
    assert not finished(c)
    retry = only_send(c.on_response(carrier.answer(remove, T0 + 100), T0 + 100))
    assert wire(retry.request).expires == 0
    assert "Authorization" in retry.request.headers
    [done] = statuses(c.on_response(carrier.answer(retry, T0 + 100), T0 + 100))
    assert done.state is TrunkState.UNREGISTERED
    assert done.sip_status == 200
    assert done.reason is None
    assert c.finished
    assert c.next_deadline() is None
    assert c.stop(T0 + 101) == []


def test_stop_when_nothing_is_bound_reports_at_once() -> None:
    c = client()
    send = only_send(c.start(T0))
    c.on_response(reply(send, 403), T0)
    actions = c.stop(T0 + 1)
    assert sends(actions) == []
    assert [s.state for s in statuses(actions)] == [TrunkState.UNREGISTERED]
    assert c.finished
    assert client().stop(T0) == []  # never started


def test_stop_while_registering_waits_for_the_answer() -> None:
    c = client(trunk(password=None))
    send = only_send(c.start(T0))
    assert c.stop(T0 + 0.1) == []
    remove = only_send(c.on_response(reply(send, 200), T0 + 0.2))
    assert remove.purpose is Purpose.UNREGISTER
    assert remove.request.cseq.seq == 2
    [done] = statuses(c.on_response(reply(remove, 200), T0 + 0.3))
    assert done.state is TrunkState.UNREGISTERED

    refused = client(trunk(password=None))
    send = only_send(refused.start(T0))
    refused.stop(T0)
    assert [s.state for s in statuses(refused.on_response(reply(send, 403), T0))] == [TrunkState.UNREGISTERED]
    assert refused.finished


def test_stop_during_a_challenged_refresh_still_removes_the_live_binding() -> None:
    c = client()
    carrier = Carrier()
    register(c, carrier)
    c.on_timer(T0 + 30.0)  # a probe, forgotten by stop
    refresh = [
        s for s in c.on_timer(T0 + 3240.0) if isinstance(s, SendRequest) and s.purpose is Purpose.REGISTER
    ]
    [refresh_send] = refresh
    c.stop(T0 + 3240.5)
    remove = only_send(c.on_response(carrier.answer(refresh_send, T0 + 3241), T0 + 3241))
    assert remove.purpose is Purpose.UNREGISTER


def test_unconfirmed_removal_says_when_the_binding_lapses() -> None:
    c = client()
    register(c, Carrier())
    remove = only_send(c.stop(T0 + 600))
    [done] = statuses(c.on_timeout(remove.request, T0 + 632))
    assert done.state is TrunkState.UNREGISTERED
    assert done.sip_status == 408
    assert done.reason == (
        "The carrier did not confirm the removal (408 Request Timeout);"
        " the binding lapses by itself within 2968 s"
    )
    assert c.finished


def test_removal_refused_credentials() -> None:
    c = client()
    carrier = Carrier()
    register(c, carrier)
    remove = only_send(c.stop(T0 + 1))
    retry = only_send(c.on_response(carrier.answer(remove, T0 + 1), T0 + 1))
    [done] = statuses(c.on_response(_challenge(carrier, retry), T0 + 1))
    assert done.state is TrunkState.UNREGISTERED
    assert done.sip_status == 401
    assert done.reason is not None
    assert done.reason.startswith(AUTH_FAILED)


def test_start_again_after_stop() -> None:
    c = client()
    carrier = Carrier()
    first = sends(register(c, carrier))[0]
    remove = only_send(c.stop(T0 + 10))
    actions = c.start(T0 + 11)
    # Same AOR at the same registrar: the removal finishes first.
    assert sends(actions) == []
    assert [s.state for s in statuses(actions)] == [TrunkState.REGISTERING]
    retry = only_send(c.on_response(carrier.answer(remove, T0 + 12), T0 + 12))
    actions = c.on_response(carrier.answer(retry, T0 + 12), T0 + 12)
    assert statuses(actions) == []  # the old binding's removal no longer speaks for the trunk
    fresh = only_send(actions)
    assert fresh.purpose is Purpose.REGISTER
    assert wire(fresh.request).call_id != wire(first.request).call_id
    assert c.start(T0 + 13) == []


# --- configuration changes ------------------------------------------------------------------------


def test_same_configuration_changes_nothing() -> None:
    c = client()
    register(c, Carrier())
    assert c.reconfigure(trunk(), T0 + 5) == []


def test_new_password_registers_the_same_binding_again() -> None:
    c = client(trunk(password="old"))
    carrier = Carrier(password="new")
    first = only_send(c.start(T0))
    retry = only_send(c.on_response(carrier.answer(first, T0), T0))
    [failed] = statuses(c.on_response(carrier.answer(retry, T0), T0))
    assert failed.reason == AUTH_FAILED
    actions = c.reconfigure(trunk(password="new"), T0 + 1)
    assert [s.state for s in statuses(actions)] == [TrunkState.REGISTERING]
    again = only_send(actions)
    assert wire(again.request).call_id == wire(first.request).call_id
    retry = only_send(c.on_response(carrier.answer(again, T0 + 1), T0 + 1))
    assert statuses(c.on_response(carrier.answer(retry, T0 + 1), T0 + 1))[-1].state is TrunkState.REGISTERED


def test_new_password_while_a_register_is_in_flight_waits_for_it() -> None:
    c = client(trunk(password="old"))
    carrier = Carrier(password="new")
    first = only_send(c.start(T0))
    actions = c.reconfigure(trunk(password="new"), T0 + 0.1)
    assert sends(actions) == []
    assert statuses(actions) == []  # already registering
    again = only_send(c.on_response(carrier.answer(first, T0 + 0.2), T0 + 0.2))
    assert "Authorization" not in again.request.headers  # a fresh attempt with the new secrets
    retry = only_send(c.on_response(carrier.answer(again, T0 + 0.3), T0 + 0.3))
    assert (
        statuses(c.on_response(carrier.answer(retry, T0 + 0.4), T0 + 0.4))[-1].state is TrunkState.REGISTERED
    )


def test_new_registrar_removes_the_old_binding_and_registers_anew_in_parallel() -> None:
    c = client()
    carrier = Carrier()
    first = sends(register(c, carrier))[0]
    actions = c.reconfigure(trunk(registrar_host="sip2.carrier.test", registrar_port=5080), T0 + 50)
    assert [s.state for s in statuses(actions)] == [TrunkState.REGISTERING]
    remove, new = sends(actions)
    assert (remove.purpose, remove.host, remove.port) == (Purpose.UNREGISTER, "sip.carrier.test", 5060)
    assert wire(remove.request).call_id == wire(first.request).call_id
    assert (new.purpose, new.host, new.port) == (Purpose.REGISTER, "sip2.carrier.test", 5080)
    assert wire(new.request).call_id != wire(first.request).call_id
    assert wire(new.request).cseq.seq == 1
    # The old removal resolves quietly; the new registration drives the status.
    retry_old = only_send(c.on_response(carrier.answer(remove, T0 + 50), T0 + 50))
    assert c.on_response(carrier.answer(retry_old, T0 + 50), T0 + 50) == []
    retry_new = only_send(c.on_response(carrier.answer(new, T0 + 51), T0 + 51))
    [registered] = statuses(c.on_response(carrier.answer(retry_new, T0 + 51), T0 + 51))
    assert registered.registrar == "sip:sip2.carrier.test:5080;transport=udp"
    assert c.status == registered


def test_new_contact_at_the_same_registrar_removes_the_old_one_first() -> None:
    c = client(trunk(password=None))
    send = only_send(c.start(T0))
    c.on_response(reply(send, 200), T0)
    actions = c.reconfigure(trunk(password=None, contact="sip:echodesk@203.0.113.6:5060"), T0 + 5)
    remove = only_send(actions)
    assert remove.purpose is Purpose.UNREGISTER
    assert c.next_deadline() == pytest.approx(T0 + 45)  # only the guard of the removal
    new = only_send(c.on_response(reply(remove, 200), T0 + 6))
    assert new.purpose is Purpose.REGISTER
    contacts = wire(new.request).contacts
    assert contacts != "*"
    assert str(contacts[0].uri) == "sip:echodesk@203.0.113.6:5060"


def test_turning_registration_off_removes_the_binding_and_probes() -> None:
    c = client(trunk(password=None))
    send = only_send(c.start(T0))
    c.on_response(reply(send, 200), T0)
    actions = c.reconfigure(trunk(password=None, register=False), T0 + 5)
    purposes = sorted(s.purpose for s in sends(actions))
    assert purposes == [Purpose.KEEPALIVE, Purpose.UNREGISTER]


def test_keepalive_change_does_not_register_again() -> None:
    c = client()
    register(c, Carrier())
    actions = c.reconfigure(trunk(keepalive_s=15, user_agent="EchoDesk Voice 2"), T0 + 5)
    probe = only_send(actions)
    assert probe.purpose is Purpose.KEEPALIVE
    assert probe.request.headers.get("User-Agent") == "EchoDesk Voice 2"
    c.on_response(reply(probe, 200), T0 + 5)
    assert c.next_deadline() == pytest.approx(T0 + 20)


def test_configuration_while_stopped_is_used_at_the_next_start() -> None:
    c = client()
    assert c.reconfigure(trunk(registrar_host="sip3.carrier.test"), T0) == []
    assert only_send(c.start(T0)).host == "sip3.carrier.test"


# --- contract -------------------------------------------------------------------------------------


def test_status_becomes_the_event_data() -> None:
    c = client()
    actions = register(c, Carrier())
    data = statuses(actions)[-1].data()
    assert data == TrunkRegistrationData(
        state=TrunkState.REGISTERED,
        registrar="sip:sip.carrier.test:5060;transport=udp",
        sip_status=200,
        expires_s=3600,
    )
    failing = client()
    send = only_send(failing.start(T0))
    [failed] = statuses(failing.on_response(reply(send, 503, [("Retry-After", "60")]), T0))
    assert failed.data() == TrunkRegistrationData(
        state=TrunkState.FAILED,
        registrar="sip:sip.carrier.test:5060;transport=udp",
        sip_status=503,
        reason="The carrier is unavailable for now (503 Service Unavailable)",
        retry_in_s=60.0,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"transport": "sctp"}, "transport"),
        ({"registrar_port": 70000}, "registrar_port"),
        ({"expires_s": 0}, "expires_s"),
        ({"keepalive_s": -1}, "keepalive_s"),
        ({"keepalive_failures": 0}, "keepalive_failures"),
        ({"ha1": {Algorithm.MD5: "0" * 32}}, "password or ha1"),
        ({"aor_user": ""}, "aor_user"),
        ({"registrar_host": "sip.carrier.test:5060"}, "registrar_port"),
        ({"registrar_host": "bad host"}, "registrar_host"),
        ({"contact": "tel:+4420700001"}, "contact"),
        ({"contact": "not a uri"}, "contact"),
        ({"user_agent": "x\r\nInjected: yes"}, "user_agent"),
        ({"password": "line\nbreak"}, "control character"),
    ],
)
def test_bad_configuration_is_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        trunk(**overrides)


def test_secrets_stay_out_of_repr() -> None:
    assert PASSWORD not in repr(trunk())
