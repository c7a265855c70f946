"""SIP INFO DTMF bodies (application/dtmf-relay and application/dtmf)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.signaling.b2bua.dtmf_info import dtmf_from_info


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
        ("application/dtmf-relay", b"Signal= *\nDuration= 250", ("*", 250)),
        ("Application/DTMF-Relay; charset=x", b"Signal=#\r\n", ("#", 160)),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=100", ("#", 100)),
        ("application/dtmf-relay", b"Signal=a\r\nDuration=10", ("A", 40)),
        ("application/dtmf-relay", b"Signal=1\r\nDuration=99999", ("1", 2000)),
        ("application/dtmf", b"7", ("7", 160)),
        ("application/dtmf", b" 0\r\n", ("0", 160)),
    ],
)
def test_digits_and_durations(content_type: str, body: bytes, expected: tuple[str, int]) -> None:
    assert dtmf_from_info(content_type, body) == expected


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("text/plain", b"5", "unsupported content type"),
        (None, b"Signal=5", "unsupported content type"),
        ("application/dtmf-relay", b"Duration=160", "no Signal="),
        ("application/dtmf-relay", b"Signal=X", "not a DTMF digit"),
        ("application/dtmf-relay", b"Signal=5\nDuration=long", "not a number"),
        ("application/dtmf", b"55", "not a DTMF digit"),
        ("application/dtmf", b"", "not a DTMF digit"),
        ("application/dtmf", b"1" * 300, "too long"),
    ],
)
def test_bad_bodies_say_why(content_type: str | None, body: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        dtmf_from_info(content_type, body)


@given(st.binary(max_size=300))
def test_any_body_is_a_digit_or_a_reason(body: bytes) -> None:
    for content_type in ("application/dtmf-relay", "application/dtmf"):
        try:
            digit, duration = dtmf_from_info(content_type, body)
        except ValueError:
            continue
        assert digit in "0123456789*#ABCD"
        assert 40 <= duration <= 2000
