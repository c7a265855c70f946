"""Which bytes a Range header asks for (RFC 9110 14.1.2), every form of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.byteranges import ByteRange, Unsatisfiable, requested_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99, 1000)),
        ("bytes=0-0", ByteRange(0, 0, 1000)),
        ("bytes=500-", ByteRange(500, 999, 1000)),
        ("bytes=-100", ByteRange(900, 999, 1000)),
        ("bytes=-5000", ByteRange(0, 999, 1000)),  # a suffix longer than the file: all of it
        ("bytes=900-5000", ByteRange(900, 999, 1000)),  # cut at the end
        ("BYTES = 1 - 2", ByteRange(1, 2, 1000)),
        ("bytes=5-4", None),  # not a valid range: ignored, the whole is sent
        ("bytes=-", None),
        ("items=0-10", None),  # a unit we do not understand
        ("bytes=0-10,20-30", None),  # several ranges: ignored (14.2)
        ("bytes=0-" + "9" * 40, None),
        ("garbage", None),
    ],
)
def test_ranges(header: str | None, expected: ByteRange | None) -> None:
    assert requested_range(header, 1000) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=0-", 0)])
def test_unsatisfiable_ranges_say_the_size(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable) as refused:
        requested_range(header, size)
    assert refused.value.content_range == f"bytes */{size}"


def test_content_range_and_length() -> None:
    part = ByteRange(100, 199, 1000)
    assert (part.content_range, part.length) == ("bytes 100-199/1000", 100)


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**9))
def test_any_header_gives_a_range_inside_the_file_or_none(header: str, size: int) -> None:
    try:
        part = requested_range(header, size)
    except Unsatisfiable:
        return
    if part is not None:
        assert 0 <= part.start <= part.end < size
