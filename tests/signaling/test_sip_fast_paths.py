"""The hot path's shortcuts agree with the strict parsers they skip: same result, same error."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.signaling.abuse import GuardPolicy, SourceGuard
from services.signaling.sip import SipParseError, make_response, parse_message
from services.signaling.sip.address import parse_address
from services.signaling.sip.parameters import _parse_header_parameters, parse_header_parameters

AGREE = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Parameters of the plain shape, and every way of leaving it: LWS, quotes, empty names or values,
# "=" inside values, brackets and colons of hosts, non-token characters.
_CHARS = [*"az09-.!%*_+`'~[]:", " ", "\t", '"', "=", ";", ",", "\\", "é", "<"]
_NAMES = st.text(alphabet=st.sampled_from(_CHARS), max_size=4)
_VALUES = st.none() | st.text(alphabet=st.sampled_from(_CHARS), max_size=6)
_PARAMS = st.builds(
    lambda lead, pairs, tail: lead + "".join(f";{n}" if v is None else f";{n}={v}" for n, v in pairs) + tail,
    st.sampled_from(["", "", " ", "\t", "x"]),
    st.lists(st.tuples(_NAMES, _VALUES), max_size=4),
    st.sampled_from(["", "", " ", ";", '"']),
)


def _outcome(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except SipParseError as exc:
        return ("error", exc.reason)


@AGREE
@given(_PARAMS)
def test_plain_parameters_parse_as_the_general_path_does(text: str) -> None:
    fast = parse_header_parameters.__wrapped__  # type: ignore[attr-defined]
    assert _outcome(fast, text) == _outcome(_parse_header_parameters, text)


@AGREE
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,6}", fullmatch=True),
            st.none() | st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]{1,8}", fullmatch=True),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_plain_parameters_keep_names_values_and_order(pairs: list[tuple[str, str | None]]) -> None:
    text = "".join(f";{name}" if value is None else f";{name}={value}" for name, value in pairs)
    fast = parse_header_parameters.__wrapped__(text)  # type: ignore[attr-defined]
    assert fast.pairs == tuple(pairs)
    assert fast == _parse_header_parameters(text)


REQUEST = (
    "OPTIONS sip:pbx.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@example.com>;tag=1928301774\r\n"
    "To: {to}\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


@AGREE
@given(
    st.sampled_from(
        [
            "<sip:bob@example.com>",
            '"Bob" <sip:bob@example.com>;x=1',
            "sip:bob@example.com",
            "sip:bob@example.com;user=phone",
            "Bob <sip:bob@example.com>",
            '"Bob \\"B\\"" <sip:bob@example.com> ; q = "a;b"',
            "<sip:bob@example.com>;tag=already",
        ]
    ),
    st.sampled_from([100, 180, 200, 401, 486]),
    st.none() | st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,12}", fullmatch=True) | st.just("not a token"),
)
def test_a_responses_to_is_what_parsing_it_gives(to: str, status: int, to_tag: str | None) -> None:
    request = parse_message(REQUEST.format(to=to).encode())
    response = make_response(request, status, to_tag=to_tag)  # type: ignore[arg-type]
    raw = response.headers.get("To")
    assert raw is not None
    try:
        parsed = parse_address(raw)
    except SipParseError:
        parsed = None
    if parsed is None:
        try:
            known = response.to
        except SipParseError:
            return
        raise AssertionError(f"{raw!r} does not parse, yet the response's To is {known!r}")
    assert response.to == parsed
    assert response.to.tag == parsed.tag


def test_a_source_address_is_resolved_once_and_trust_changes_apply_at_once() -> None:
    guard = SourceGuard(GuardPolicy(trusted=("10.0.0.0/8",)))
    assert guard.trusted("10.1.2.3")
    assert not guard.trusted("192.0.2.7")
    assert guard.trusted("::ffff:10.1.2.3")
    guard.set_trusted(["192.0.2.0/24"])
    assert not guard.trusted("10.1.2.3")
    assert guard.trusted("192.0.2.7")
