"""Opus <-> G.711 transcoding on the packet path: the relay alone (packets in, packets out, real
libopus), then a webrtc-rtp bridge whose browser (a :class:`PacketPeer` on a mux without sockets)
offers only Opus and whose carrier is a plain RTP peer on loopback. Tones are checked by FFT."""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Callable

import numpy as np
import pytest

from services.media.bridge import Bridge
from services.media.chunk_outbox import ChunkOutbox
from services.media.g711 import decoding_table, encoding_table
from services.media.opus import OpusDecoder, OpusEncoder
from services.media.ports import PortRange
from services.media.recording_fork import RecordingFork
from services.media.relay import Relay, Target
from services.media.rtp import OutboundStream
from services.media.transcode import REORDER_WAIT, TranscodingRelay, transcodes
from services.media.webrtc import Address, DtlsCertificate, WebRtcMux, WebRtcSession
from shared.bus import Rejected
from shared.events import LegKind
from shared.media import CreateSession, RemoteDescription, SendDtmf, SessionKind
from shared.sdp import Codec, SessionDescription
from tests.media.test_bridge_webrtc import heard_by, join, until
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.webrtc_peer import FakeTransport, PacketPeer, fake_mux

OPUS = Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1")
OPUS_EVENT = Codec(110, "telephone-event", 48000)
PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
EVENT = Codec(101, "telephone-event", 8000)
_RTP = struct.Struct("!BBHII")
HOST = "127.0.0.1"
BROWSER: Address = ("192.0.2.77", 50000)
CALLEE: Address = ("192.0.2.88", 50010)
_ports = itertools.count(33000, 100)


def pcm(frequency: float, start: int, count: int, amplitude: float = 8000) -> bytes:
    n = np.arange(start, start + count)
    return (amplitude * np.sin(2 * np.pi * frequency * n / 8000)).astype(np.int16).tobytes()


def rtp(payload_type: int, sequence: int, timestamp: int, payload: bytes, ssrc: int = 0x1234) -> bytes:
    return _RTP.pack(0x80, payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def fields(packet: bytes) -> tuple[int, int, int, int]:
    _, second, sequence, timestamp, ssrc = _RTP.unpack_from(packet)
    return second, sequence, timestamp, ssrc


def capture(audio: Codec, event: Codec | None) -> tuple[Target, list[bytes]]:
    sent: list[bytes] = []

    def send(packet: bytes) -> bool:
        sent.append(packet)
        return True

    return Target(send, OutboundStream(audio.clock_rate), audio, event), sent


class Timer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """A virtual clock's timers for the relay's reordering wait, fired when the test lets time pass."""

    def __init__(self) -> None:
        self.pending: list[Timer] = []

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timer:
        assert delay == REORDER_WAIT
        timer = Timer(callback)
        self.pending.append(timer)
        return timer

    def fire(self) -> int:
        due, self.pending = self.pending, []
        live = [timer for timer in due if not timer.cancelled]
        for timer in live:
            timer.callback()
        return len(live)


def test_only_opus_against_g711_transcodes() -> None:
    assert transcodes(OPUS, PCMU)
    assert transcodes(PCMA, OPUS)
    assert not transcodes(PCMU, PCMA)  # a table, not a codec
    assert not transcodes(OPUS, OPUS)
    relay = TranscodingRelay(OPUS, None, lambda digit: None)
    with pytest.raises(ValueError, match="Opus <-> PCMU/PCMA only"):
        relay.connect(capture(Codec(9, "G722", 8000), None)[0])
    with pytest.raises(ValueError, match="needs transcoding"):
        Relay(OPUS, None, lambda digit: None).connect(capture(PCMU, None)[0])


def test_opus_to_pcmu_is_a_clean_20_ms_stream_with_losses_concealed() -> None:
    encoder = OpusEncoder(8000)
    timers = Timers()
    relay = TranscodingRelay(OPUS, OPUS_EVENT, lambda digit: None, schedule=timers.schedule)
    target, sent = capture(PCMU, EVENT)
    relay.connect(target)
    lost = {20, 40, 41, 42}
    waits = 0
    for index in range(100):
        packet = encoder.encode(pcm(440, index * 160, 160))
        if index not in lost:
            relay.receive(rtp(111, 5000 + index, 7_000_000 + index * 960, packet))
        waits += timers.fire()  # 20 ms pass before the next packet
    # The packet after each gap waited a packet's time for the missing ones, then they were concealed.
    assert waits == 2
    # Every 20 ms of the 100 reached the carrier: three gaps were filled by FEC and concealment.
    assert len(sent) == 100
    assert relay.counters.relayed == 100
    headers = [fields(packet) for packet in sent]
    assert {second & 0x7F for second, *_ in headers} == {0}
    assert {len(packet) for packet in sent} == {12 + 160}
    sequences = [sequence for _, sequence, _, _ in headers]
    timestamps = [timestamp for _, _, timestamp, _ in headers]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(sequences))
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(timestamps))
    samples = decoding_table("PCMU")[np.frombuffer(b"".join(p[12:] for p in sent), np.uint8)]
    heard = analyse(samples[800:])
    assert abs(heard["dominant_hz"] - 440) < 10
    assert heard["purity"] > 0.8
    # A late packet (behind the last decoded) and a duplicate are dropped, not played out of time.
    relay.receive(rtp(111, 5000 + 98, 7_000_000 + 98 * 960, b"\x08"))
    relay.receive(rtp(111, 5000 + 99, 7_000_000 + 99 * 960, b"\x08"))
    assert len(sent) == 100
    # A corrupt Opus packet is counted, and the stream goes on.
    relay.receive(rtp(111, 5000 + 100, 7_000_000 + 100 * 960, b"\xff\xff\xff"))
    assert relay.counters.malformed == 1


def test_reordered_opus_is_played_in_order_and_nothing_is_concealed() -> None:
    encoder = OpusEncoder(8000)
    timers = Timers()
    relay = TranscodingRelay(OPUS, None, lambda digit: None, schedule=timers.schedule)
    target, sent = capture(PCMU, None)
    relay.connect(target)
    packets = [encoder.encode(pcm(440, index * 160, 160)) for index in range(30)]
    order = [*range(10), 11, 10, 12, 14, 15, 13, *range(16, 30)]
    for index in order:
        relay.receive(rtp(111, 100 + index, index * 960, packets[index]))
    assert len(sent) == 30
    assert relay.counters.not_relayed == 0  # none dropped as late
    assert timers.pending
    assert all(timer.cancelled for timer in timers.pending)  # the missing packets came in time
    assert timers.fire() == 0
    # Each packet was decoded in its turn: what the carrier hears is what a decoder fed in order makes.
    decoder = OpusDecoder(8000)
    expected = b"".join(decoder.decode(packet) for packet in packets)
    codes = encoding_table("PCMU")[np.frombuffer(expected, np.uint16)].tobytes()
    assert b"".join(packet[12:] for packet in sent) == codes
    timestamps = [fields(packet)[2] for packet in sent]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(timestamps))


def test_opus_with_a_timestamp_wrap_keeps_pcmu_continuous() -> None:
    encoder = OpusEncoder(8000)
    relay = TranscodingRelay(OPUS, None, lambda digit: None)
    target, sent = capture(PCMU, None)
    relay.connect(target)
    start = 0xFFFFFFFF - 5 * 960
    for index in range(12):
        relay.receive(
            rtp(111, 65530 + index, start + index * 960, encoder.encode(pcm(440, index * 160, 160)))
        )
    timestamps = [fields(packet)[2] for packet in sent]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(timestamps))


def test_pcma_to_opus_runs_at_48_khz_and_keeps_the_tone() -> None:
    relay = TranscodingRelay(PCMA, EVENT, lambda digit: None)
    target, sent = capture(OPUS, OPUS_EVENT)
    relay.connect(target)
    law = encoding_table("PCMA")
    # 30 ms packets (240 samples): frames of 20 ms are cut across them.
    for index in range(60):
        samples = np.frombuffer(pcm(1000, index * 240, 240), np.uint16)
        relay.receive(rtp(8, 100 + index, 4000 + index * 240, law[samples].tobytes()))
    assert len(sent) == 60 * 240 // 160
    headers = [fields(packet) for packet in sent]
    assert {second & 0x7F for second, *_ in headers} == {111}
    timestamps = [timestamp for _, _, timestamp, _ in headers]
    assert all((b - a) & 0xFFFFFFFF == 960 for a, b in itertools.pairwise(timestamps))
    decoder = OpusDecoder(8000)
    decoded = np.frombuffer(b"".join(decoder.decode(packet[12:]) for packet in sent), np.int16)
    heard = analyse(decoded[800:])
    assert abs(heard["dominant_hz"] - 1000) < 10
    assert heard["purity"] > 0.8


def test_events_cross_with_their_clock_moved() -> None:
    digits: list[str] = []
    relay = TranscodingRelay(OPUS, OPUS_EVENT, lambda digit: digits.append(digit.digit))
    target, sent = capture(PCMU, EVENT)
    relay.connect(target)
    encoder = OpusEncoder(8000)
    relay.receive(rtp(111, 1, 96000, encoder.encode(pcm(440, 0, 160))))
    # Digit 5 from the browser at 48 kHz: 120 ms is 5760 units there and 960 at 8 kHz.
    relay.receive(rtp(0x80 | 110, 2, 96960, bytes([5, 10]) + (1920).to_bytes(2, "big")))
    for sequence in (3, 4, 5):
        relay.receive(rtp(110, sequence, 96960, bytes([5, 0x80 | 10]) + (5760).to_bytes(2, "big")))
    assert digits == ["5"]
    events = [packet for packet in sent if packet[1] & 0x7F == 101]
    assert len(events) == 4
    assert events[0][1] & 0x80  # the marker of the event's start
    assert [int.from_bytes(packet[14:16], "big") for packet in events] == [320, 960, 960, 960]
    audio_timestamp = fields(sent[0])[2]
    assert {fields(packet)[2] for packet in events} == {(audio_timestamp + 160) & 0xFFFFFFFF}


# -- a bridge with a browser that offers only Opus


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


@pytest.fixture
async def mux(certificate: DtlsCertificate) -> tuple[WebRtcMux, FakeTransport]:
    return fake_mux(certificate)


def make_bridge(mux: WebRtcMux, request: CreateSession, fork: RecordingFork | None = None) -> Bridge:
    low = next(_ports)
    return Bridge(
        "s1",
        request,
        mux=mux,
        ports=PortRange(low, low + 99),
        rtp_host=HOST,
        advertised_address=HOST,
        on_digit=lambda leg, digit: None,
        fork=fork,
    )


def send_opus(mux: WebRtcMux, browser: PacketPeer, source: Address, frequency: float, count: int) -> None:
    """``count`` packets of 20 ms Opus from ``browser``: 960 apart at the 48 kHz RTP clock (RFC 7587 4.1)."""
    encoder = OpusEncoder(8000)
    assert browser.srtp is not None
    for index in range(count):
        header = _RTP.pack(0x80, 111, (browser.sequence + index) & 0xFFFF, index * 960, browser.ssrc)
        mux.datagram_received(
            browser.srtp.protect(header + encoder.encode(pcm(frequency, index * 160, 160))), source
        )


async def test_browser_offering_only_opus_is_transcoded_to_the_carriers_g711(
    mux: tuple[WebRtcMux, FakeTransport],
) -> None:
    mux_, transport = mux
    browser = PacketPeer(codecs="111 101")
    carrier = await RtpPeer.open(HOST)
    request = CreateSession(
        tenant_id="t1",
        call_id="c1",
        kind=SessionKind.WEBRTC_RTP,
        agent_offer=browser.offer().serialize(),
        customer_offer=carrier.description(codecs="0"),
        record=True,
    )
    fork = RecordingFork("t1", "c1", ChunkOutbox())
    bridge = make_bridge(mux_, request, fork)
    try:
        agent_sdp, customer_sdp = await bridge.open()
        assert agent_sdp is not None
        assert customer_sdp is not None
        answer = SessionDescription.parse(agent_sdp)
        # Its telephone-event runs at 8 kHz, not at Opus's clock: RFC 4733 section 2.1 leaves it out.
        assert [str(codec) for codec in answer.media[0].codecs] == ["opus/48000/2"]
        assert "RTP/AVP 0 101" in customer_sdp
        carrier.learn(customer_sdp)
        session = bridge.legs[LegKind.AGENT].media
        assert isinstance(session, WebRtcSession)
        browser.accept_answer(answer)
        join(mux_, transport, browser, session, BROWSER)
        assert isinstance(bridge.legs[LegKind.AGENT].relay, TranscodingRelay)
        assert isinstance(bridge.legs[LegKind.CUSTOMER].relay, TranscodingRelay)

        send_opus(mux_, browser, BROWSER, 440, 50)
        carrier.start_tone(1000)
        await until(lambda: len(carrier.received) >= 45, "browser -> carrier")
        heard = analyse(carrier.audio(0).astype(np.int16)[800:])
        assert abs(heard["dominant_hz"] - 440) < 10
        assert heard["purity"] > 0.8
        # The recorder stores G.711: the browser's leg is recorded as the PCMU it was turned into.
        assert fork.taps[LegKind.AGENT].codec == "PCMU/8000"
        assert fork.taps[LegKind.CUSTOMER].codec == "PCMU/8000"
        await until(lambda: session.counters.rtp_sent >= 30, "carrier -> browser")
        packets = heard_by(browser, transport, BROWSER)
        assert {packet[1] & 0x7F for packet in packets} == {111}
        decoder = OpusDecoder(8000)
        samples = np.frombuffer(b"".join(decoder.decode(packet[12:]) for packet in packets), np.int16)
        heard = analyse(samples[800:])
        assert abs(heard["dominant_hz"] - 1000) < 10
        assert heard["purity"] > 0.8
    finally:
        bridge.close()
        carrier.close()


async def test_dtmf_we_play_to_an_opus_browser_runs_at_its_48_khz_event_clock(
    mux: tuple[WebRtcMux, FakeTransport],
) -> None:
    mux_, transport = mux
    browser = PacketPeer(codecs="111 110")
    offer = (
        browser.offer()
        .serialize()
        .replace("a=rtpmap:101 telephone-event/8000", "a=rtpmap:110 telephone-event/48000")
    )
    carrier = await RtpPeer.open(HOST)
    request = CreateSession(
        tenant_id="t1",
        call_id="c5",
        kind=SessionKind.WEBRTC_RTP,
        agent_offer=offer,
        customer_offer=carrier.description(codecs="0"),
    )
    bridge = make_bridge(mux_, request)
    try:
        agent_sdp, customer_sdp = await bridge.open()
        assert agent_sdp is not None
        assert customer_sdp is not None
        assert "a=rtpmap:110 telephone-event/48000" in agent_sdp
        carrier.learn(customer_sdp)
        session = bridge.legs[LegKind.AGENT].media
        assert isinstance(session, WebRtcSession)
        browser.accept_answer(SessionDescription.parse(agent_sdp))
        join(mux_, transport, browser, session, BROWSER)
        carrier.start_tone(1000)
        await until(lambda: session.counters.rtp_sent >= 5, "carrier -> browser")
        bridge.send_dtmf(SendDtmf(leg=LegKind.AGENT, digit="9", duration_ms=100))
        await asyncio.sleep(0.25)
        packets = heard_by(browser, transport, BROWSER)
        events = [packet for packet in packets if packet[1] & 0x7F == 110]
        assert events[0][1] & 0x80  # the marker on the event's start
        # RFC 4733 section 2.3.5: 100 ms is 4800 units of the 48 kHz event clock.
        assert {packet[12] for packet in events} == {9}
        assert int.from_bytes(events[-1][14:16], "big") == 4800
        assert [packet[13] & 0x80 for packet in events[-3:]] == [0x80, 0x80, 0x80]
        # The event sits on the audio's timeline: its timestamp is near the Opus audio's, at 48 kHz.
        audio = [fields(packet)[2] for packet in packets if packet[1] & 0x7F == 111]
        gap = (fields(events[0])[2] - audio[0]) & 0xFFFFFFFF
        assert 0 < gap < 48000, gap
    finally:
        bridge.close()
        carrier.close()


async def test_agent_to_agent_between_an_opus_only_browser_and_a_g711_browser(
    mux: tuple[WebRtcMux, FakeTransport],
) -> None:
    mux_, transport = mux
    caller, callee = PacketPeer(codecs="111 101"), PacketPeer()
    request = CreateSession(
        tenant_id="t1", call_id="c4", kind=SessionKind.WEBRTC_WEBRTC, agent_offer=caller.offer().serialize()
    )
    bridge = make_bridge(mux_, request)
    try:
        agent_sdp, customer_sdp = await bridge.open()
        assert agent_sdp is not None
        assert customer_sdp is not None
        caller.accept_answer(SessionDescription.parse(agent_sdp))
        # The callee is offered G.711 (an offer of ours to a browser always is) and answers PCMU.
        answer = callee.answer(SessionDescription.parse(customer_sdp), formats="0 101")
        bridge.update(RemoteDescription(leg=LegKind.CUSTOMER, sdp=answer, type="answer"))
        agent, customer = bridge.legs[LegKind.AGENT].media, bridge.legs[LegKind.CUSTOMER].media
        assert isinstance(agent, WebRtcSession)
        assert isinstance(customer, WebRtcSession)
        join(mux_, transport, caller, agent, BROWSER)
        join(mux_, transport, callee, customer, CALLEE)
        assert isinstance(bridge.legs[LegKind.AGENT].relay, TranscodingRelay)
        send_opus(mux_, caller, BROWSER, 440, 30)
        packets = heard_by(callee, transport, CALLEE)
        assert len(packets) == 30
        assert {packet[1] & 0x7F for packet in packets} == {0}
        samples = decoding_table("PCMU")[np.frombuffer(b"".join(p[12:] for p in packets), np.uint8)]
        assert abs(analyse(samples[800:])["dominant_hz"] - 440) < 10
        law = encoding_table("PCMU")
        for index in range(30):
            payload = law[np.frombuffer(pcm(1000, index * 160, 160), np.uint16)].tobytes()
            mux_.datagram_received(callee.srtp_packet(payload, payload_type=0), CALLEE)
        packets = heard_by(caller, transport, BROWSER)
        assert len(packets) == 30
        assert {packet[1] & 0x7F for packet in packets} == {111}
        decoder = OpusDecoder(8000)
        decoded = np.frombuffer(b"".join(decoder.decode(p[12:]) for p in packets), np.int16)
        assert abs(analyse(decoded[800:])["dominant_hz"] - 1000) < 10
    finally:
        bridge.close()


async def test_browser_offering_pcmu_and_opus_stays_a_passthrough(
    mux: tuple[WebRtcMux, FakeTransport],
) -> None:
    mux_, _ = mux
    carrier = await RtpPeer.open(HOST)
    request = CreateSession(
        tenant_id="t1",
        call_id="c2",
        kind=SessionKind.WEBRTC_RTP,
        agent_offer=PacketPeer(codecs="111 8 0 101").offer().serialize(),
        customer_offer=carrier.description(codecs="0"),
    )
    bridge = make_bridge(mux_, request)
    try:
        agent_sdp, _ = await bridge.open()
        assert agent_sdp is not None
        assert "opus" not in agent_sdp
        assert str(SessionDescription.parse(agent_sdp).media[0].codecs[0]) == "PCMU/8000"
        for leg in bridge.legs.values():
            assert type(leg.relay) is Relay
    finally:
        bridge.close()
        carrier.close()


async def test_no_common_codec_names_the_codecs(mux: tuple[WebRtcMux, FakeTransport]) -> None:
    mux_, _ = mux
    offer = PacketPeer(codecs="9 103").offer().serialize()
    offer = offer.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:9 G722/8000\r\na=rtpmap:103 ISAC/16000")
    bridge = make_bridge(
        mux_, CreateSession(tenant_id="t1", call_id="c3", kind=SessionKind.WEBRTC_RTP, agent_offer=offer)
    )
    try:
        with pytest.raises(Rejected) as refused:
            await bridge.open()
        assert refused.value.code == "no_common_codec"
        for name in ("G722/8000", "ISAC/16000", "PCMU/8000", "opus/48000/2"):
            assert name in str(refused.value.message), name
    finally:
        bridge.close()
    await asyncio.sleep(0)
