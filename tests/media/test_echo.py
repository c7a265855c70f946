"""The echo line's RTP rewriting (RFC 3550 sections 5.1 and 8.2)."""

from __future__ import annotations

import struct

import pytest

from services.media.webrtc import DtlsCertificate, RtpEcho, WebRtcSession
from shared.sdp import Codec

HEADER = struct.Struct("!BBHII")
SOURCE = 0x11223344


def packet(
    sequence: int,
    timestamp: int,
    payload: bytes = b"\xd5" * 160,
    *,
    second: int = 0,
    source: int = SOURCE,
    csrcs: int = 0,
    extension: bytes | None = None,
    padding: int = 0,
    version: int = 2,
) -> bytes:
    first = (version << 6) | csrcs | (0x10 if extension is not None else 0) | (0x20 if padding else 0)
    out = HEADER.pack(first, second, sequence, timestamp, source) + bytes(4 * csrcs)
    if extension is not None:
        out += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sent() -> list[bytes]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def echo(sent: list[bytes], clock: Clock) -> RtpEcho:
    session = WebRtcSession(DtlsCertificate.generate(), address="192.0.2.1", port=7882)
    session.codecs = (Codec(0, "PCMU", 8000),)

    def send_rtp(data: bytes) -> bool:
        sent.append(data)
        return True

    session.send_rtp = send_rtp  # type: ignore[method-assign]
    return RtpEcho(session, clock=clock)


def fields(data: bytes) -> tuple[int, int, int, int, int]:
    return HEADER.unpack_from(data)


def test_our_ssrc_shifted_numbers_same_payload(echo: RtpEcho, sent: list[bytes]) -> None:
    echo.receive(packet(10, 1600, second=0x80))  # marker, PCMU
    echo.receive(packet(11, 1760))
    echo.receive(packet(13, 2080, second=101))  # a loss before, then telephone-event
    first, second, third = (fields(data) for data in sent)
    assert first[0] == 0x80
    assert first[1] == 0x80
    assert first[4] == echo.ssrc != SOURCE
    assert (second[2] - first[2]) & 0xFFFF == 1
    assert (third[2] - second[2]) & 0xFFFF == 2
    assert (second[3] - first[3]) & 0xFFFFFFFF == 160
    assert (third[3] - second[3]) & 0xFFFFFFFF == 320
    assert third[1] == 101
    assert all(data[12:] == b"\xd5" * 160 for data in sent)
    assert echo.echoed == 3


def test_csrcs_extension_and_padding_are_dropped(echo: RtpEcho, sent: list[bytes]) -> None:
    echo.receive(packet(1, 0, b"abcd", csrcs=2, extension=b"\x10\xff\x00\x00", padding=4))
    [data] = sent
    assert data[0] == 0x80
    assert data[12:] == b"abcd"


def test_wraparound(echo: RtpEcho, sent: list[bytes]) -> None:
    echo.receive(packet(0xFFFF, 0xFFFFFF60))
    echo.receive(packet(0, 0x00000000))
    a, b = fields(sent[0]), fields(sent[1])
    assert (b[2] - a[2]) & 0xFFFF == 1
    assert (b[3] - a[3]) & 0xFFFFFFFF == 160


def test_new_source_continues_our_stream_with_a_marker(
    echo: RtpEcho, sent: list[bytes], clock: Clock
) -> None:
    echo.receive(packet(500, 80000))
    clock.now += 1.0
    echo.receive(packet(7, 123, source=0x55667788))
    echo.receive(packet(8, 283, source=0x55667788))
    a, b, c = (fields(data) for data in sent)
    assert (b[2] - a[2]) & 0xFFFF == 1
    assert (b[3] - a[3]) & 0xFFFFFFFF == 8000  # one second of an 8 kHz clock
    assert b[1] & 0x80
    assert not c[1] & 0x80
    assert (c[2] - b[2]) & 0xFFFF == 1
    assert (c[3] - b[3]) & 0xFFFFFFFF == 160
    assert a[4] == b[4] == c[4] == echo.ssrc


@pytest.mark.parametrize(
    "bad",
    [
        b"\x80\x00",
        packet(1, 0, version=1),
        packet(1, 0, b"", extension=b"\x00" * 8)[:14],  # the extension header overruns
        packet(1, 0, b"", extension=b"\x00" * 8)[:-4],  # the extension body overruns
        bytes([0xA0]) + bytes(11) + b"\x40",  # a padding count beyond the packet
    ],
)
def test_malformed_packets_are_dropped(echo: RtpEcho, sent: list[bytes], bad: bytes) -> None:
    echo.receive(bad)
    assert sent == []
    assert echo.dropped == 1
