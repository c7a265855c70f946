"""Garbage on the shared WebRTC port: counted and dropped, no exception, no other session disturbed.

Datagrams are random bytes in every RFC 7983 range, STUN-shaped messages with random attributes,
forged checks naming a live session's ufrag, DTLS-shaped records and RTP-shaped packets; they come from
a stranger or with the spoofed source address of a connected session.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from aioice import stun
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.media.webrtc import DtlsCertificate, RtpEcho, WebRtcState
from tests.support.webrtc_peer import PacketPeer, connect, fake_mux

VICTIM = ("198.51.100.7", 50000)
BYSTANDER = ("198.51.100.8", 50001)
STRANGER = ("203.0.113.9", 40000)
FORGED = b"forged-check"

_ATTRIBUTE_TYPES = st.sampled_from([0x0006, 0x0008, 0x0009, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802A])


def _attributes(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(
        struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4) for kind, value in items
    )


def _stun(message_type: int, transaction: bytes, body: bytes) -> bytes:
    return struct.pack("!HHI", message_type, len(body), 0x2112A442) + transaction + body


def _record(content: int, epoch: int, body: bytes) -> bytes:
    return struct.pack("!BHH", content, 0xFEFD, epoch) + bytes(6) + struct.pack("!H", len(body)) + body


datagrams = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda first, rest: bytes([first]) + rest, st.integers(0, 255), st.binary(max_size=200)),
    st.builds(
        _stun,
        st.one_of(st.sampled_from([0x0001, 0x0011, 0x0101, 0x0111]), st.integers(0, 0x3FFF)),
        st.binary(min_size=12, max_size=12),
        st.lists(
            st.tuples(st.one_of(_ATTRIBUTE_TYPES, st.integers(0, 0xFFFF)), st.binary(max_size=40)), max_size=6
        ).map(_attributes),
    ),
    st.builds(lambda key: FORGED + key, st.binary(min_size=1, max_size=30)),
    st.builds(_record, st.integers(20, 25), st.integers(0, 2), st.binary(max_size=200)),
    st.builds(lambda rest: b"\x80" + rest, st.binary(min_size=11, max_size=200)),
)


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


async def _run(certificate: DtlsCertificate, garbage: list[tuple[bytes, bool]]) -> None:
    mux, transport = fake_mux(certificate)
    victim_peer, bystander_peer = PacketPeer(), PacketPeer()
    victim = connect(mux, transport, victim_peer, VICTIM)
    bystander = connect(mux, transport, bystander_peer, BYSTANDER)
    RtpEcho(victim)
    RtpEcho(bystander)
    transport.sent.clear()

    for datagram, spoofed in garbage:
        if datagram.startswith(FORGED):
            # A check naming the victim's session, signed with a guessed password.
            forged = victim_peer.binding_request(pwd=datagram[len(FORGED) :].hex().ljust(22, "0"))
            datagram = bytes(forged)
        mux.datagram_received(datagram, VICTIM if spoofed else STRANGER)

    assert mux.counters.errors == 0
    # Nothing answers garbage except a forged check that happens to be right (it never is).
    assert all(destination != STRANGER for _, destination in transport.sent)
    for peer, session, address in ((bystander_peer, bystander, BYSTANDER), (victim_peer, victim, VICTIM)):
        assert session.state is WebRtcState.CONNECTED, session.reason
        assert mux.session_at(address) is session
        transport.take(address)
        mux.datagram_received(peer.srtp_packet(b"\x5a" * 160), address)
        [echoed] = transport.take(address)
        assert peer.srtp is not None
        assert peer.srtp.unprotect(echoed)[12:] == b"\x5a" * 160


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(st.tuples(datagrams, st.booleans()), max_size=25))
def test_garbage_is_dropped_and_disturbs_no_session(
    certificate: DtlsCertificate, garbage: list[tuple[bytes, bool]]
) -> None:
    asyncio.run(_run(certificate, garbage))


def test_stun_parse_failures_are_the_ones_the_mux_catches() -> None:
    # The mux catches ValueError and struct.error from aioice; these are the shapes that raise them.
    with pytest.raises(ValueError, match="length"):
        stun.parse_message(_stun(0x0001, bytes(12), b"")[:-1])
    with pytest.raises(struct.error):
        stun.parse_message(_stun(0x0001, bytes(12), _attributes([(0x0024, b"\x00\x01")])))
