"""SIP digest authentication: RFC vectors, client/server round trips, nonce and replay rules, fuzz."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.signaling.sip.auth import (
    Algorithm,
    ChallengeOutcome,
    DigestClient,
    DigestError,
    DigestFailure,
    DigestOk,
    DigestParseError,
    DigestResult,
    DigestServer,
    FailureKind,
    HA1Lookup,
    ha1,
    parse_challenges,
    parse_credentials,
    request_digest,
    userhash,
)

REALM = "pbx.echodesk.test"
SECRET = b"test-secret-0123456789abcdef"
URI = "sip:pbx.echodesk.test"
T0 = 1_800_000_000.0
ALL_ALGORITHMS = (Algorithm.SHA512_256, Algorithm.SHA256, Algorithm.MD5)


def directory(passwords: dict[str, str], realm: str = REALM) -> HA1Lookup:
    """What the registrar keeps: HA1 per user and algorithm, never the password."""
    stored = {
        (user, algorithm): ha1(user, realm, password, algorithm)
        for user, password in passwords.items()
        for algorithm in ALL_ALGORITHMS
    }

    def lookup(username: str, algorithm: Algorithm) -> str | None:
        return stored.get((username, algorithm))

    return lookup


USERS = directory({"alice": "correct horse", "bob": "hunter2"})


def counting_cnonces(prefix: str = "cn") -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def server(**options: object) -> DigestServer:
    return DigestServer(REALM, SECRET, **options)  # type: ignore[arg-type]


def alice(password: str = "correct horse") -> DigestClient:
    return DigestClient("alice", password=password, cnonce=counting_cnonces())


def expect_failure(result: DigestResult, kind: FailureKind) -> DigestFailure:
    assert isinstance(result, DigestFailure), result
    assert result.kind is kind, result
    return result


def expect_ok(result: DigestResult) -> DigestOk:
    assert isinstance(result, DigestOk), result
    return result


def param(value: str, name: str) -> str:
    return parse_credentials(value).params[name]


# --- RFC test vectors ----------------------------------------------------------------------------

RFC7616_CHALLENGE = """Digest
       realm="http-auth@example.org",
       qop="auth, auth-int",
       algorithm={algorithm},
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""""

RFC7616_AUTHORIZATION = """Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm={algorithm},
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="{response}",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""""

RFC7616_RESPONSES = {
    Algorithm.MD5: "8ca523f5e9506fed4657c9700eebdbec",
    Algorithm.SHA256: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


@pytest.mark.parametrize("algorithm", [Algorithm.MD5, Algorithm.SHA256])
def test_rfc7616_3_9_1_response(algorithm: Algorithm) -> None:
    digest = request_digest(
        ha1=ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm),
        algorithm=algorithm,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert digest == RFC7616_RESPONSES[algorithm]


@pytest.mark.parametrize("algorithm", [Algorithm.MD5, Algorithm.SHA256])
def test_rfc7616_3_9_1_client_answers_the_example_challenge(algorithm: Algorithm) -> None:
    client = DigestClient(
        "Mufasa", password="Circle of Life", cnonce=lambda: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    )
    answer = client.answer([RFC7616_CHALLENGE.format(algorithm=algorithm.value)], "GET", "/dir/index.html")
    ours = parse_credentials(answer.value)
    theirs = parse_credentials(
        RFC7616_AUTHORIZATION.format(algorithm=algorithm.value, response=RFC7616_RESPONSES[algorithm])
    )
    assert answer.outcome is ChallengeOutcome.FIRST
    assert dict(ours.params) == dict(theirs.params)
    assert ours.response == RFC7616_RESPONSES[algorithm]


def test_rfc7616_client_prefers_sha256_when_both_are_offered() -> None:
    client = DigestClient("Mufasa", password="Circle of Life", cnonce=lambda: "c")
    md5, sha256 = (RFC7616_CHALLENGE.format(algorithm=a) for a in ("MD5", "SHA-256"))
    for values in ([md5, sha256], [sha256, md5], [f"{md5}, {sha256}"]):
        assert client.answer(values, "GET", "/").challenge.algorithm is Algorithm.SHA256


RFC2617_CHALLENGE = """Digest
                 realm="testrealm@host.com",
                 qop="auth,auth-int",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41\""""

RFC2617_AUTHORIZATION = """Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41\""""


def test_rfc2617_3_5_example() -> None:
    (challenge,) = parse_challenges(RFC2617_CHALLENGE)
    assert challenge.algorithm is Algorithm.MD5  # absent means MD5 (RFC 2617 section 3.2.1)
    assert challenge.qop == ("auth", "auth-int")
    client = DigestClient("Mufasa", password="Circle Of Life", cnonce=lambda: "0a4f113b")
    value = client.authorization(challenge, "GET", "/dir/index.html")
    assert param(value, "response") == "6629fae49393a05397450978507c4ef1"
    theirs = parse_credentials(RFC2617_AUTHORIZATION)
    ours = parse_credentials(value)
    assert {k: v for k, v in ours.params.items() if k != "algorithm"} == dict(theirs.params)


def test_rfc7616_3_9_2_userhash_sha512_256_with_erratum_4897() -> None:
    # The RFC's printed username hash and response do not follow from its inputs; erratum 4897
    # gives these.
    challenge_value = (
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )
    client = DigestClient(
        "J\u00e4s\u00f8n Doe",
        password="Secret, or not?",
        cnonce=lambda: "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )
    value = client.answer([challenge_value], "GET", "/doe.json").value
    credentials = parse_credentials(value)
    assert credentials.userhash
    assert credentials.username == "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    assert credentials.username == userhash("J\u00e4s\u00f8n Doe", "api@example.org", Algorithm.SHA512_256)
    assert credentials.response == "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"


def test_rfc7616_3_9_2_username_star_is_decoded() -> None:
    value = (
        "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"api@example.org\", "
        'uri="/doe.json", algorithm=SHA-512-256, nonce="n", nc=00000001, cnonce="c", qop=auth, '
        'response="00", opaque="o", userhash=false'
    )
    assert parse_credentials(value).username == "J\u00e4s\u00f8n Doe"
    for broken in (
        value.replace("username*=", 'username="x", username*='),
        value.replace("userhash=false", "userhash=true"),
        value.replace("%C3%A4", "%C3"),
        value.replace("UTF-8''", "ISO-8859-1''"),
    ):
        with pytest.raises(DigestParseError):
            parse_credentials(broken)


# --- Server: challenges --------------------------------------------------------------------------


def test_challenges_offer_sha256_first_then_md5_with_qop_and_opaque() -> None:
    values = server().challenges(T0)
    challenges = parse_challenges(*values)
    assert [c.algorithm for c in challenges] == [Algorithm.SHA256, Algorithm.MD5]
    assert all(c.realm == REALM and c.qop == ("auth",) and c.opaque and not c.stale for c in challenges)
    assert len({c.nonce for c in challenges}) == 1
    assert all('qop="auth"' in v and "algorithm=" in v for v in values)


def test_stale_challenge_says_so() -> None:
    challenges = parse_challenges(*server().challenges(T0, stale=True))
    assert challenges
    assert all(c.stale for c in challenges)


def test_nonces_issued_in_the_same_millisecond_differ() -> None:
    digest_server = server()
    nonces = {parse_challenges(digest_server.challenges(T0)[0])[0].nonce for _ in range(50)}
    assert len(nonces) == 50


def test_registrar_and_proxy_use_their_own_headers() -> None:
    registrar, proxy = server(), server(proxy=True)
    assert (registrar.status_code, registrar.challenge_header, registrar.credentials_header) == (
        401,
        "WWW-Authenticate",
        "Authorization",
    )
    assert (proxy.status_code, proxy.challenge_header, proxy.credentials_header) == (
        407,
        "Proxy-Authenticate",
        "Proxy-Authorization",
    )


@pytest.mark.parametrize(
    "options",
    [
        {"secret": b"short"},
        {"realm": "bad\r\nrealm"},
        {"realm": ""},
        {"algorithms": ()},
        {"algorithms": (Algorithm.MD5, Algorithm.MD5)},
        {"nonce_lifetime": 0.0},
    ],
)
def test_server_refuses_bad_configuration(options: dict[str, object]) -> None:
    arguments: dict[str, object] = {"realm": REALM, "secret": SECRET, **options}
    with pytest.raises(DigestError):
        DigestServer(**arguments)  # type: ignore[arg-type]


# --- Round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_round_trip_with_password(algorithm: Algorithm) -> None:
    digest_server = server(algorithms=(algorithm,))
    answer = alice().answer(digest_server.challenges(T0), "REGISTER", URI)
    assert answer.challenge.algorithm is algorithm
    ok = expect_ok(digest_server.verify(answer.value, "REGISTER", T0 + 1, USERS))
    assert (ok.username, ok.realm, ok.algorithm, ok.uri, ok.nc) == ("alice", REALM, algorithm, URI, 1)


@pytest.mark.parametrize("algorithm", [Algorithm.SHA256, Algorithm.MD5])
def test_round_trip_with_precomputed_ha1(algorithm: Algorithm) -> None:
    digest_server = server()
    client = DigestClient("bob", ha1={algorithm: ha1("bob", REALM, "hunter2", algorithm)})
    answer = client.answer(digest_server.challenges(T0), "INVITE", "sip:+995555123456@pbx.echodesk.test")
    assert answer.challenge.algorithm is algorithm  # only the algorithm we hold an HA1 for
    assert expect_ok(digest_server.verify(answer.value, "INVITE", T0, USERS)).username == "bob"


def test_round_trip_prefers_sha256() -> None:
    digest_server = server()
    answer = alice().answer(digest_server.challenges(T0), "REGISTER", URI)
    assert answer.challenge.algorithm is Algorithm.SHA256
    assert expect_ok(digest_server.verify(answer.value, "REGISTER", T0, USERS)).algorithm is Algorithm.SHA256


@pytest.mark.parametrize("algorithm", [Algorithm.MD5_SESS, Algorithm.SHA256_SESS])
def test_round_trip_session_algorithms(algorithm: Algorithm) -> None:
    digest_server = server(algorithms=(algorithm,))
    answer = alice().answer(digest_server.challenges(T0), "REGISTER", URI)
    assert expect_ok(digest_server.verify(answer.value, "REGISTER", T0, USERS)).algorithm is algorithm


def test_digest_covers_the_method() -> None:
    digest_server = server()
    answer = alice().answer(digest_server.challenges(T0), "REGISTER", URI)
    expect_failure(digest_server.verify(answer.value, "INVITE", T0, USERS), FailureKind.BAD_CREDENTIALS)


def test_wrong_password_fails() -> None:
    digest_server = server()
    answer = alice("wrong horse").answer(digest_server.challenges(T0), "REGISTER", URI)
    failure = expect_failure(
        digest_server.verify(answer.value, "REGISTER", T0, USERS), FailureKind.BAD_CREDENTIALS
    )
    assert failure.username == "alice"


def test_unknown_user_fails_as_its_own_kind() -> None:
    digest_server = server()
    answer = DigestClient("mallory", password="x").answer(digest_server.challenges(T0), "REGISTER", URI)
    expect_failure(digest_server.verify(answer.value, "REGISTER", T0, USERS), FailureKind.UNKNOWN_USER)


# --- Nonces: forged, stale, bound to a source ----------------------------------------------------


def tamper(nonce: str) -> str:
    middle = len(nonce) // 2
    return nonce[:middle] + ("A" if nonce[middle] != "A" else "B") + nonce[middle + 1 :]


def answer_with_nonce(digest_server: DigestServer, nonce: str) -> str:
    challenge = parse_challenges(*digest_server.challenges(T0))[0]
    return alice().authorization(dataclasses.replace(challenge, nonce=nonce), "REGISTER", URI)


@pytest.mark.parametrize(
    "make_nonce",
    [
        pytest.param(lambda real, other: tamper(real), id="tampered"),
        pytest.param(lambda real, other: other, id="other-secret"),
        pytest.param(lambda real, other: "dcd98b7102dd2f0e8b11d0f600bfb0c093", id="foreign-format"),
        pytest.param(lambda real, other: real[:-1], id="truncated"),
        pytest.param(lambda real, other: real + "A", id="extended"),
        pytest.param(lambda real, other: "", id="empty"),
        pytest.param(lambda real, other: "\u00e9" * 43, id="non-ascii"),
    ],
)
def test_forged_nonce_fails_with_correct_password(make_nonce: Callable[[str, str], str]) -> None:
    digest_server = server()
    real = parse_challenges(digest_server.challenges(T0)[0])[0].nonce
    other = parse_challenges(DigestServer(REALM, b"another-secret-0123456789").challenges(T0)[0])[0].nonce
    value = answer_with_nonce(digest_server, make_nonce(real, other))
    expect_failure(digest_server.verify(value, "REGISTER", T0, USERS), FailureKind.INVALID_NONCE)


def test_nonce_bound_to_source() -> None:
    digest_server = server()
    answer = alice().answer(digest_server.challenges(T0, source="198.51.100.7:5060"), "REGISTER", URI)
    expect_failure(
        digest_server.verify(answer.value, "REGISTER", T0, USERS, source="203.0.113.9:5060"),
        FailureKind.INVALID_NONCE,
    )
    expect_ok(digest_server.verify(answer.value, "REGISTER", T0, USERS, source="198.51.100.7:5060"))


def test_nonce_lifetime_on_a_virtual_clock() -> None:
    digest_server = server(nonce_lifetime=30.0)
    client = alice()
    (challenge,) = parse_challenges(digest_server.challenges(T0)[0])
    at_deadline = client.authorization(challenge, "REGISTER", URI)
    after_deadline = client.authorization(challenge, "REGISTER", URI)
    expect_ok(digest_server.verify(at_deadline, "REGISTER", T0 + 30.0, USERS))
    failure = expect_failure(
        digest_server.verify(after_deadline, "REGISTER", T0 + 30.001, USERS), FailureKind.STALE_NONCE
    )
    assert failure.stale


def test_nonce_from_the_future_is_stale() -> None:
    digest_server = server()
    answer = alice().answer(digest_server.challenges(T0 + 3600), "REGISTER", URI)
    expect_failure(digest_server.verify(answer.value, "REGISTER", T0, USERS), FailureKind.STALE_NONCE)


def test_expired_nonce_with_wrong_password_is_not_stale() -> None:
    # RFC 7616 section 3.3: stale only for a valid digest, or the agent would retry a bad password.
    digest_server = server(nonce_lifetime=30.0)
    answer = alice("wrong").answer(digest_server.challenges(T0), "REGISTER", URI)
    expect_failure(
        digest_server.verify(answer.value, "REGISTER", T0 + 60, USERS), FailureKind.BAD_CREDENTIALS
    )


def test_stale_retry_is_not_counted_as_a_failure_and_succeeds() -> None:
    digest_server = server(nonce_lifetime=30.0)
    client = alice()
    first = client.answer(digest_server.challenges(T0), "REGISTER", URI)
    result = digest_server.verify(first.value, "REGISTER", T0 + 3600, USERS)
    expect_failure(result, FailureKind.STALE_NONCE)
    retry = client.answer(
        digest_server.challenges(T0 + 3600, stale=True), "REGISTER", URI, sent=[first.value]
    )
    assert retry.outcome is ChallengeOutcome.STALE
    expect_ok(digest_server.verify(retry.value, "REGISTER", T0 + 3601, USERS))


def test_client_tells_rejection_from_first_challenge() -> None:
    digest_server = server()
    client = alice("wrong")
    first = client.answer(digest_server.challenges(T0), "REGISTER", URI)
    assert first.outcome is ChallengeOutcome.FIRST
    expect_failure(digest_server.verify(first.value, "REGISTER", T0, USERS), FailureKind.BAD_CREDENTIALS)
    again = client.answer(digest_server.challenges(T0), "REGISTER", URI, sent=[first.value])
    assert again.outcome is ChallengeOutcome.REJECTED
    # Credentials for another realm (e.g. the carrier's registrar) do not make a proxy's 407 a rejection.
    other = DigestServer("proxy.carrier.test", SECRET, proxy=True)
    assert (
        client.answer(other.challenges(T0), "INVITE", URI, sent=[first.value]).outcome
        is ChallengeOutcome.FIRST
    )


# --- Nonce-count replay protection ---------------------------------------------------------------


def test_replayed_header_fails() -> None:
    digest_server = server()
    answer = alice().answer(digest_server.challenges(T0), "REGISTER", URI)
    expect_ok(digest_server.verify(answer.value, "REGISTER", T0, USERS))
    expect_failure(digest_server.verify(answer.value, "REGISTER", T0 + 1, USERS), FailureKind.REPLAY)


def test_increasing_nonce_count_works_and_older_counts_are_replays() -> None:
    digest_server = server()
    client = alice()
    challenge = client.choose(parse_challenges(*digest_server.challenges(T0)))
    values = [client.authorization(challenge, "REGISTER", URI) for _ in range(6)]
    assert [param(v, "nc") for v in values] == [f"{n:08x}" for n in range(1, 7)]
    for index in (0, 1, 4):  # gaps are fine: nc must only increase
        assert expect_ok(digest_server.verify(values[index], "REGISTER", T0, USERS)).nc == index + 1
    for index in (2, 3, 4):
        expect_failure(digest_server.verify(values[index], "REGISTER", T0, USERS), FailureKind.REPLAY)
    expect_ok(digest_server.verify(values[5], "REGISTER", T0, USERS))


def test_failed_digest_does_not_advance_the_nonce_count() -> None:
    digest_server = server()
    (challenge,) = parse_challenges(digest_server.challenges(T0)[0])
    burner = DigestClient("alice", password="wrong")
    burner._nonce_counts[challenge.nonce] = 0xFFFFFFFE  # an attacker picking nc=ffffffff
    burnt = burner.authorization(challenge, "REGISTER", URI)
    assert param(burnt, "nc") == "ffffffff"
    expect_failure(digest_server.verify(burnt, "REGISTER", T0, USERS), FailureKind.BAD_CREDENTIALS)
    expect_ok(digest_server.verify(alice().authorization(challenge, "REGISTER", URI), "REGISTER", T0, USERS))


def test_bounded_nonce_state_never_reopens_an_evicted_live_nonce() -> None:
    digest_server = server(max_tracked_nonces=2)
    client = alice()
    challenges = [parse_challenges(digest_server.challenges(T0 + i)[0])[0] for i in range(3)]
    first_use = [client.authorization(c, "REGISTER", URI) for c in challenges]
    replays_of_first = client.authorization(challenges[0], "REGISTER", URI)
    for value in first_use:
        expect_ok(digest_server.verify(value, "REGISTER", T0 + 5, USERS))
    assert digest_server.tracked_nonces == 2
    # The oldest nonce's count was evicted: replaying its nc=1 must not pass, nor may nc=2 be
    # trusted without state; the agent is sent for a fresh nonce instead.
    expect_failure(digest_server.verify(first_use[0], "REGISTER", T0 + 5, USERS), FailureKind.STALE_NONCE)
    expect_failure(digest_server.verify(replays_of_first, "REGISTER", T0 + 5, USERS), FailureKind.STALE_NONCE)
    # Nonces issued after the evicted one are unaffected.
    fresh = parse_challenges(digest_server.challenges(T0 + 6)[0])[0]
    expect_ok(digest_server.verify(client.authorization(fresh, "REGISTER", URI), "REGISTER", T0 + 6, USERS))


def test_forget_expired_drops_state() -> None:
    digest_server = server(nonce_lifetime=30.0)
    for i in range(5):
        answer = alice().answer(digest_server.challenges(T0 + i), "REGISTER", URI)
        expect_ok(digest_server.verify(answer.value, "REGISTER", T0 + i, USERS))
    assert digest_server.tracked_nonces == 5
    digest_server.forget_expired(T0 + 32.5)
    assert digest_server.tracked_nonces == 2
    digest_server.forget_expired(T0 + 100)
    assert digest_server.tracked_nonces == 0


# --- What the server refuses to accept -----------------------------------------------------------


def valid_value(digest_server: DigestServer | None = None) -> str:
    return alice().answer((digest_server or server()).challenges(T0), "REGISTER", URI).value


def edit(value: str, name: str, replacement: str | None) -> str:
    """Replace (or with None remove) one parameter of a credentials value."""
    pattern = re.compile(rf'(,\s*)?\b{re.escape(name)}=("[^"]*"|[^,\s]*)')
    new = "" if replacement is None else rf"\g<1>{replacement}"
    edited, count = pattern.subn(new, value, count=1)
    assert count == 1, (name, value)
    return edited


@pytest.mark.parametrize(
    ("name", "replacement", "kind"),
    [
        ("realm", 'realm="other.test"', FailureKind.MISMATCH),
        ("algorithm", "algorithm=SHA-512-256", FailureKind.MISMATCH),
        ("algorithm", "algorithm=SHA-1", FailureKind.MISMATCH),
        ("opaque", None, FailureKind.MISMATCH),
        ("opaque", 'opaque="guess"', FailureKind.MISMATCH),
        ("qop", "qop=auth-int", FailureKind.MISMATCH),
        ("qop", None, FailureKind.MISMATCH),
        ("nc", "nc=1", FailureKind.MALFORMED),
        ("nc", "nc=0000000g", FailureKind.MALFORMED),
        ("nc", None, FailureKind.MALFORMED),
        ("cnonce", None, FailureKind.MALFORMED),
        ("cnonce", 'cnonce=""', FailureKind.MALFORMED),
        ("uri", 'uri=""', FailureKind.MALFORMED),
        ("uri", None, FailureKind.MALFORMED),
        ("response", 'response="not hex"', FailureKind.MALFORMED),
        ("response", None, FailureKind.MALFORMED),
        ("nonce", None, FailureKind.MALFORMED),
        ("username", None, FailureKind.MALFORMED),
    ],
)
def test_refused_credentials(name: str, replacement: str | None, kind: FailureKind) -> None:
    digest_server = server()
    value = edit(valid_value(digest_server), name, replacement)
    expect_failure(digest_server.verify(value, "REGISTER", T0, USERS), kind)


def test_userhash_is_not_accepted_since_it_is_never_offered() -> None:
    digest_server = server()
    value = valid_value(digest_server) + ", userhash=true"
    expect_failure(digest_server.verify(value, "REGISTER", T0, USERS), FailureKind.MISMATCH)


def test_response_case_does_not_matter() -> None:
    digest_server = server()
    value = valid_value(digest_server)
    upper = edit(value, "response", f'response="{param(value, "response").upper()}"')
    expect_ok(digest_server.verify(upper, "REGISTER", T0, USERS))


def test_rfc2069_form_only_when_allowed() -> None:
    for allowed in (False, True):
        digest_server = server(allow_rfc2069=allowed)
        md5 = next(c for c in parse_challenges(*digest_server.challenges(T0)) if c.algorithm is Algorithm.MD5)
        # An RFC 2069 agent ignores qop: it answers as if none was offered.
        value = alice().authorization(dataclasses.replace(md5, qop=()), "REGISTER", URI)
        assert "qop" not in parse_credentials(value).params
        result = digest_server.verify(value, "REGISTER", T0, USERS)
        if allowed:
            assert expect_ok(result).nc is None
        else:
            expect_failure(result, FailureKind.MISMATCH)
    lenient = server(allow_rfc2069=True)
    stray = edit(valid_value(lenient), "qop", None)  # nc and cnonce without qop
    expect_failure(lenient.verify(stray, "REGISTER", T0, USERS), FailureKind.MALFORMED)


# --- Parser --------------------------------------------------------------------------------------


def test_parser_grammar() -> None:
    value = (
        'dIgEsT  USERNAME="a\\"b\\\\c" ,, realm = "r, with commas", Nonce=abc, uri="sip:x@y;transport=tcp",'
        '\r\n response="00", qop="auth", nc=00000001, cnonce="c", algorithm="sha-256", opaque=""'
    )
    credentials = parse_credentials(value)
    assert credentials.username == 'a"b\\c'
    assert credentials.realm == "r, with commas"
    assert credentials.nonce == "abc"
    assert credentials.uri == "sip:x@y;transport=tcp"
    assert credentials.qop == "auth"
    assert Algorithm.from_token(credentials.algorithm) is Algorithm.SHA256
    assert credentials.opaque == ""


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Basic username="a"',
        'Digest username="a", username="b", realm="r", nonce="n", uri="u", response="0"',
        'Digest username="a", USERNAME="b", realm="r", nonce="n", uri="u", response="0"',
        'Digest username="a" realm="r", nonce="n", uri="u", response="0"',
        'Digest username="a, realm="r", nonce="n", uri="u", response="0"',
        'Digest username="a\r\nVia: x", realm="r", nonce="n", uri="u", response="0"',
        'Digest username=a b, realm="r", nonce="n", uri="u", response="0"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="0", Digest username="a"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="0", =x',
        'Digest username="a", realm="r", nonce="n", uri="u", response',
        'Digest username="a", realm="r", nonce="n", uri="u", response="0"\\',
        'Digest username="\ud800", realm="r", nonce="n", uri="u", response="0"',
        "Digest " + ", ".join(f'p{i}="{"x" * 100}"' for i in range(100)),
    ],
)
def test_malformed_credentials(value: str) -> None:
    with pytest.raises(DigestParseError):
        parse_credentials(value)
    expect_failure(server().verify(value, "REGISTER", T0, USERS), FailureKind.MALFORMED)


def test_challenges_among_other_schemes_and_unknown_algorithms() -> None:
    values = [
        'Bearer mF_9.B5f-4.1JqM==, Basic realm="simple", Digest realm="a", nonce="1", algorithm=AKAv1-MD5',
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Digest realm="b", nonce=2, qop="auth"',
        'Negotiate, Digest realm=c, nonce="3", algorithm=sha-512-256, stale=TRUE, qop="auth-int, auth"',
    ]
    challenges = parse_challenges(*values)
    assert [(c.realm, c.nonce, c.algorithm) for c in challenges] == [
        ("b", "2", Algorithm.MD5),
        ("c", "3", Algorithm.SHA512_256),
    ]
    assert challenges[1].stale
    assert challenges[1].qop == ("auth-int", "auth")
    assert DigestClient("u", password="p").choose(challenges).realm == "c"


@pytest.mark.parametrize(
    "value",
    [
        'Digest nonce="n"',
        'Digest realm="r"',
        'Digest realm="r", nonce="n" junk',
        'Digest realm="r", realm="s"',
    ],
)
def test_malformed_challenges(value: str) -> None:
    with pytest.raises(DigestParseError):
        parse_challenges(value)


# --- Client choices ------------------------------------------------------------------------------


def test_client_refuses_what_it_cannot_answer() -> None:
    client = DigestClient("alice", password="p", realm=REALM)
    auth_int_only = 'Digest realm="pbx.echodesk.test", nonce="n", qop="auth-int"'
    other_realm = 'Digest realm="evil.test", nonce="n", qop="auth"'
    session_without_qop = 'Digest realm="pbx.echodesk.test", nonce="n", algorithm=MD5-sess'
    for value in (auth_int_only, other_realm, session_without_qop, 'Basic realm="x"'):
        with pytest.raises(DigestError):
            client.answer([value], "REGISTER", URI)
    md5_only = DigestClient("alice", ha1={Algorithm.MD5: "0" * 32})
    with pytest.raises(DigestError):
        md5_only.answer(server(algorithms=(Algorithm.SHA256,)).challenges(T0), "REGISTER", URI)


def test_client_refuses_header_injection() -> None:
    (challenge,) = parse_challenges(server().challenges(T0)[0])
    with pytest.raises(DigestError):
        alice().authorization(challenge, "REGISTER", "sip:x\r\nContact: <sip:evil>")
    with pytest.raises(DigestError):
        DigestClient("alice\r\n", password="p")


def test_client_takes_exactly_one_secret() -> None:
    with pytest.raises(DigestError):
        DigestClient("alice", password="p", ha1={Algorithm.MD5: "0" * 32})
    with pytest.raises(DigestError):
        DigestClient("alice")


def test_client_quotes_what_needs_quoting() -> None:
    digest_server = DigestServer('realm "with" \\ quotes', SECRET)
    lookup = directory({'we"ird\\': "pw"}, realm='realm "with" \\ quotes')
    answer = DigestClient('we"ird\\', password="pw").answer(digest_server.challenges(T0), "REGISTER", URI)
    assert expect_ok(digest_server.verify(answer.value, "REGISTER", T0, lookup)).username == 'we"ird\\'


def test_utf8_username_round_trip() -> None:
    digest_server = server()
    lookup = directory({"n\u00e1na \u10d2\u10d8\u10dd": "p\u00e4ss"})
    answer = DigestClient("n\u00e1na \u10d2\u10d8\u10dd", password="p\u00e4ss").answer(
        digest_server.challenges(T0), "REGISTER", URI
    )
    expect_ok(digest_server.verify(answer.value, "REGISTER", T0, lookup))


# --- Fuzz: the module's own error type or a failure result, nothing else --------------------------

_WORDS = [
    "Digest",
    "digest",
    "Basic",
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "qop",
    "nc",
    "cnonce",
    "algorithm",
    "opaque",
    "userhash",
    "username*",
    "stale",
    "auth",
    "auth-int",
    "MD5",
    "SHA-256",
    "SHA-512-256-sess",
    "true",
    "00000001",
    "ffffffff",
    "sip:a@b",
    "UTF-8''%C3%A4",
    "%ZZ",
    "==",
    ";",
]
_SYMBOLS = [
    " ",
    "  ",
    "\t",
    "\r\n",
    ",",
    "=",
    '"',
    "\\",
    '\\"',
    "\u00e9",
    "\x00",
    "\x7f",
    "\ud800",
    "\U0001f600",
]
_PIECES = st.sampled_from(_WORDS + _SYMBOLS)
_HEADERS = st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=60).map("".join))


def assert_only_own_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(DigestParseError):
        call()


@settings(max_examples=400, deadline=None)
@given(_HEADERS)
def test_fuzz_parsers_raise_only_their_error(value: str) -> None:
    assert_only_own_errors(lambda: parse_credentials(value))
    assert_only_own_errors(lambda: parse_challenges(value))


FUZZ_SERVER = server(allow_rfc2069=True)


@settings(max_examples=400, deadline=None)
@given(_HEADERS)
def test_fuzz_verify_always_returns_a_result(value: str) -> None:
    result = FUZZ_SERVER.verify(value, "REGISTER", T0, USERS)
    assert isinstance(result, DigestFailure)


_VALID = valid_value(DigestServer(REALM, SECRET))
_RELEVANT = ("username", "realm", "nonce", "uri", "response", "algorithm", "qop", "nc", "cnonce", "opaque")


def _meaning(value: str) -> tuple[str | None, ...]:
    credentials = parse_credentials(value)
    fields = [credentials.params.get(name) for name in _RELEVANT]
    return tuple(
        f.lower() if f is not None and name in ("response", "algorithm", "qop") else f
        for name, f in zip(_RELEVANT, fields, strict=True)
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_VALID)), st.integers(0, 8), _PIECES | st.characters())
def test_fuzz_mutated_credentials_verify_only_when_meaning_is_unchanged(
    start: int, length: int, insert: str
) -> None:
    mutated = _VALID[:start] + insert + _VALID[start + length :]
    result = DigestServer(REALM, SECRET).verify(mutated, "REGISTER", T0, USERS)
    if isinstance(result, DigestOk):
        assert _meaning(mutated) == _meaning(_VALID)


_PARAM_NAMES = st.from_regex(r"x-[a-z0-9!#$%&'*+.^_`|~-]{1,8}", fullmatch=True)
# Anything a quoted-string can carry: no control characters but HTAB, no lone surrogates.
_PARAM_VALUES = st.text(st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_PARAM_NAMES, _PARAM_VALUES, max_size=6), st.text(" \t,", max_size=3))
def test_fuzz_quoted_params_round_trip(extra: dict[str, str], noise: str) -> None:
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    params = {"realm": "r", "nonce": "n", **extra}
    body = ", ".join(f"{name}={quoted(v)}" for name, v in params.items())
    (challenge,) = parse_challenges(f"Digest {noise}{body}{noise}")
    assert dict(challenge.params) == params
