"""DTLS-SRTP against an independent pyOpenSSL peer: handshake, fingerprints, keys, retransmission."""

from __future__ import annotations

import time

import pylibsrtp
import pytest
from aiortc.rtcdtlstransport import RTCCertificate
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from services.media.webrtc import (
    DtlsCertificate,
    DtlsRole,
    DtlsState,
    DtlsTransport,
    SrtpContext,
    SrtpKeys,
)
from services.media.webrtc.dtls import _records
from shared.sdp import Fingerprint

RTP = bytes.fromhex("80000001000000a0deadbeef") + b"\xff" * 160


class RawPeer:
    """A DTLS-SRTP peer set up as aiortc sets up its own, straight on pyOpenSSL."""

    def __init__(self, role: DtlsRole) -> None:
        certificate = RTCCertificate.generateCertificate()
        self.fingerprint = Fingerprint.of_certificate(certificate._cert.public_bytes(Encoding.DER))
        context = SSL.Context(SSL.DTLS_METHOD)
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        context.use_certificate(certificate._cert)
        context.use_privatekey(certificate._key)
        context.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
        self.ssl = SSL.Connection(context, None)
        if role is DtlsRole.CLIENT:
            self.ssl.set_connect_state()
        else:
            self.ssl.set_accept_state()
        self.done = False

    def step(self, datagrams: list[bytes]) -> list[bytes]:
        for datagram in datagrams:
            self.ssl.bio_write(datagram)
        if not self.done:
            try:
                self.ssl.do_handshake()
                self.done = True
            except SSL.WantReadError:
                pass
        out = []
        while True:
            try:
                out.append(self.ssl.bio_read(65536))
            except SSL.WantReadError:
                return out

    def material(self) -> bytes:
        return self.ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 60)

    def peer_der(self) -> bytes:
        certificate = self.ssl.get_peer_certificate(as_cryptography=True)
        assert certificate is not None
        return certificate.public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


def handshake(ours: DtlsTransport, raw: RawPeer) -> None:
    to_raw = ours.start()
    to_ours = raw.step([]) if ours.role is DtlsRole.SERVER else []
    for _ in range(10):
        to_ours = raw.step(to_raw) + to_ours
        to_raw = [out for datagram in to_ours for out in ours.receive(datagram)]
        to_ours = []
        if raw.done and ours.state is not DtlsState.CONNECTING and not to_raw:
            return


def test_fingerprint_is_sha256_upper_case_colon_hex(certificate: DtlsCertificate) -> None:
    value = certificate.fingerprint.value
    assert certificate.fingerprint.algorithm == "sha-256"
    assert len(value) == 32 * 3 - 1
    assert value == value.upper()
    assert certificate.fingerprint.matches(certificate.certificate.public_bytes(Encoding.DER))


@pytest.mark.parametrize("role", [DtlsRole.SERVER, DtlsRole.CLIENT])
def test_handshake_and_keys_per_rfc_5764(certificate: DtlsCertificate, role: DtlsRole) -> None:
    raw = RawPeer(DtlsRole.CLIENT if role is DtlsRole.SERVER else DtlsRole.SERVER)
    ours = DtlsTransport(certificate, role, [raw.fingerprint])
    handshake(ours, raw)

    assert ours.state is DtlsState.CONNECTED, ours.reason
    assert ours.protocol_version == "DTLSv1.2"
    assert raw.ssl.get_selected_srtp_profile() == b"SRTP_AES128_CM_SHA1_80"
    assert certificate.fingerprint.matches(raw.peer_der())
    material = raw.material()
    client, server = material[0:16] + material[32:46], material[16:32] + material[46:60]
    assert ours.keys is not None
    if role is DtlsRole.SERVER:
        assert (ours.keys.inbound, ours.keys.outbound) == (client, server)
    else:
        assert (ours.keys.inbound, ours.keys.outbound) == (server, client)

    # The raw peer protects with its own write key; we unprotect, and the other way round.
    raw_keys = SrtpKeys.from_keying_material(material, server=role is DtlsRole.CLIENT)
    theirs, mine = SrtpContext(raw_keys), SrtpContext(ours.keys)
    assert mine.unprotect(theirs.protect(RTP)) == RTP
    assert theirs.unprotect(mine.protect(RTP)) == RTP


def test_wrong_fingerprint_fails_the_handshake(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    other = DtlsCertificate.generate().fingerprint
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [other])
    handshake(ours, raw)
    assert ours.state is DtlsState.FAILED
    assert ours.keys is None
    assert "fingerprint" in (ours.reason or "")


def test_strongest_offered_hash_decides(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    right_256 = raw.fingerprint
    wrong_512 = Fingerprint("sha-512", ":".join(["AB"] * 64))
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [right_256, wrong_512])
    handshake(ours, raw)
    # RFC 8122 section 5: the sha-512 set is the one checked, and it does not match.
    assert ours.state is DtlsState.FAILED


def test_unknown_hash_functions_alone_fail(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [Fingerprint("md2", ":".join(["00"] * 16))])
    handshake(ours, raw)
    assert ours.state is DtlsState.FAILED


def test_a_peer_without_srtp_fails(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    context = SSL.Context(SSL.DTLS_METHOD)
    key = RTCCertificate.generateCertificate()
    context.use_certificate(key._cert)
    context.use_privatekey(key._key)
    raw.ssl = SSL.Connection(context, None)
    raw.ssl.set_connect_state()
    raw.fingerprint = Fingerprint.of_certificate(key._cert.public_bytes(Encoding.DER))
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [raw.fingerprint])
    handshake(ours, raw)
    assert ours.state is DtlsState.FAILED
    assert "SRTP" in (ours.reason or "")


def test_close_notify_reaches_the_peer(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [raw.fingerprint])
    handshake(ours, raw)
    [alert] = ours.close()
    raw.ssl.bio_write(alert)
    with pytest.raises(SSL.ZeroReturnError):
        raw.ssl.recv(1500)
    assert ours.state is DtlsState.CLOSED
    assert ours.receive(alert) == []


def test_peer_close_notify_closes(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [raw.fingerprint])
    handshake(ours, raw)
    raw.ssl.shutdown()
    for datagram in raw.step([]):
        ours.receive(datagram)
    assert ours.state is DtlsState.CLOSED
    assert ours.reason == "closed by the peer"


def test_garbage_after_the_handshake_is_discarded(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [raw.fingerprint])
    handshake(ours, raw)
    for garbage in (
        b"\x17\xfe\xfd" + bytes(50),
        b"\x15\xfe\xfd\x00\x00" + bytes(6) + b"\x00\x02\x02\x28",
        b"\x16",
    ):
        ours.receive(garbage)
    assert ours.state is DtlsState.CONNECTED


def test_lost_flight_is_retransmitted(certificate: DtlsCertificate) -> None:
    raw = RawPeer(DtlsRole.CLIENT)
    ours = DtlsTransport(certificate, DtlsRole.SERVER, [raw.fingerprint])
    ours.start()
    first = [out for datagram in raw.step([]) for out in ours.receive(datagram)]
    assert first, "the server flight"
    timeout = ours.timeout()
    assert timeout is not None
    assert 0 < timeout <= 1.0
    time.sleep(timeout + 0.05)
    again = ours.handle_timeout()
    # The same records again (new record sequence numbers), and the peer completes on them alone.
    assert [datagram[0] for datagram in again] == [datagram[0] for datagram in first]
    to_ours = raw.step(again)
    for datagram in to_ours:
        ours.receive(datagram)
    assert ours.state is DtlsState.CONNECTED


def test_flights_are_cut_at_record_boundaries() -> None:
    def record(size: int, content: int = 22) -> bytes:
        return bytes([content, 0xFE, 0xFD]) + bytes(8) + size.to_bytes(2) + b"\x00" * size

    records = [record(500), record(500), record(300), record(1500), record(10)]
    datagrams = _records(b"".join(records), 1200)
    assert datagrams == [records[0] + records[1], records[2], records[3], records[4]]
    assert _records(records[0] + b"\x16\xfe", 1200) == [records[0] + b"\x16\xfe"]


def test_keying_material_length_is_checked() -> None:
    with pytest.raises(ValueError, match="60 bytes"):
        SrtpKeys.from_keying_material(bytes(59), server=True)


def test_srtp_rejects_tampering_and_replay() -> None:
    keys = SrtpKeys.from_keying_material(bytes(range(60)), server=True)
    mirror = SrtpKeys(inbound=keys.outbound, outbound=keys.inbound)
    sender, receiver = SrtpContext(mirror), SrtpContext(keys)
    protected = sender.protect(RTP)
    assert len(protected) == len(RTP) + 10  # the 80-bit tag (RFC 3711 section 4.2)
    assert receiver.unprotect(protected) == RTP
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(protected)  # replayed (RFC 3711 section 3.3.2)
    tampered = bytearray(sender.protect(RTP[:2] + b"\x00\x02" + RTP[4:]))
    tampered[-1] ^= 1
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(bytes(tampered))
