"""The WebRTC port on a real loopback socket: two peers at once, a stranger spraying garbage."""

from __future__ import annotations

import asyncio
import os

import pytest
from aioice import stun

from services.media.webrtc import Address, RtpEcho, WebRtcMux, WebRtcSession, WebRtcState
from tests.support.webrtc_peer import PacketPeer


class Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait(data)

    def send(self, data: bytes, destination: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, destination)

    async def next(self) -> bytes:
        return await asyncio.wait_for(self.received.get(), 2.0)


async def open_socket() -> Socket:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        Socket, local_addr=("127.0.0.1", 0)
    )
    return protocol


async def connect(mux: WebRtcMux, peer: PacketPeer, sock: Socket) -> WebRtcSession:
    destination = ("127.0.0.1", mux.port)
    session = mux.create_session()
    peer.accept_answer(session.accept_offer(peer.offer()))
    sock.send(bytes(peer.binding_request(nominate=True)), destination)
    response = stun.parse_message(await sock.next())
    assert response.message_class == stun.Class.RESPONSE
    for datagram in peer.start_dtls():
        sock.send(datagram, destination)
    while peer.srtp is None or session.state is not WebRtcState.CONNECTED:
        for datagram in peer.receive_dtls(await sock.next()):
            sock.send(datagram, destination)
    return session


async def test_two_peers_on_one_port_echo_apart_while_garbage_flies() -> None:
    mux = await WebRtcMux.listen("127.0.0.1", 0)
    assert mux.port > 0
    destination = ("127.0.0.1", mux.port)
    try:
        first, second = PacketPeer(), PacketPeer()
        first_socket, second_socket, stranger = await open_socket(), await open_socket(), await open_socket()
        one = await connect(mux, first, first_socket)
        two = await connect(mux, second, second_socket)
        RtpEcho(one)
        RtpEcho(two)
        for index in range(50):
            stranger.send(b"\xff" + os.urandom(index * 7 % 300), destination)
            stranger.send(bytes([0x80 + index % 64]) + os.urandom(100), destination)
            stranger.send(bytes([0x16, 0xFE, 0xFD]) + os.urandom(60), destination)
            first_socket.send(first.srtp_packet(bytes([1]) * 160), destination)
            second_socket.send(second.srtp_packet(bytes([2]) * 160), destination)
        assert first.srtp is not None
        assert second.srtp is not None
        heard_first = [first.srtp.unprotect(await first_socket.next()) for _ in range(50)]
        heard_second = [second.srtp.unprotect(await second_socket.next()) for _ in range(50)]
        assert {packet[12:] for packet in heard_first} == {bytes([1]) * 160}
        assert {packet[12:] for packet in heard_second} == {bytes([2]) * 160}
        await asyncio.sleep(0.05)
        assert stranger.received.empty()
        counters = mux.counters
        assert counters.errors == 0
        assert counters.unknown == 50
        assert counters.srtp_unknown_source == 50
        assert counters.dtls_unknown_source == 50
        assert one.counters.rtp_received == two.counters.rtp_received == 50
    finally:
        mux.close()
        await asyncio.wait_for(mux.wait_closed(), 2.0)


async def test_a_wildcard_bind_needs_an_advertised_address() -> None:
    with pytest.raises(ValueError, match="wildcard"):
        await WebRtcMux.listen("0.0.0.0", 0)


async def test_a_taken_port_raises_address_in_use() -> None:
    mux = await WebRtcMux.listen("127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="in use"):
            await WebRtcMux.listen("127.0.0.1", mux.port)
    finally:
        mux.close()
