"""DTLS for DTLS-SRTP (RFC 5764) over memory BIOs, sans-I/O: datagrams in, datagrams out.

OpenSSL does the handshake (as aiortc drives it); this object only moves bytes and keeps the state.
The caller feeds every DTLS datagram of its peer to :meth:`DtlsTransport.receive`, sends what it
returns, and calls :meth:`DtlsTransport.handle_timeout` when :meth:`DtlsTransport.timeout` says so
(OpenSSL's retransmission timer, RFC 6347 section 4.2.4). Once the handshake is done the peer's
certificate is checked against the fingerprint of its SDP (RFC 5763 section 5, RFC 8122 section 5) and
the SRTP keys are exported (RFC 5764 section 4.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Final

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from services.media.webrtc.certificate import DtlsCertificate
from services.media.webrtc.srtp import KEYING_MATERIAL_LENGTH, OPENSSL_PROFILE, SrtpKeys
from shared.sdp import Fingerprint

#: The exporter label of DTLS-SRTP (RFC 5764 section 4.2).
EXPORTER_LABEL: Final = b"EXTRACTOR-dtls_srtp"
#: Datagrams we send stay below this: the IPv6 minimum MTU (1280) less IP and UDP headers, and room
#: for a TURN relay's 36 bytes, so no flight is ever fragmented by IP (RFC 6347 section 4.1.1.1).
DEFAULT_MTU: Final = 1200
#: The DTLS 1.2 record header: type, version, epoch, sequence number, length (RFC 6347 section 4.1).
_RECORD_HEADER: Final = 13
#: Strongest first, for the choice of RFC 8122 section 5 (the hash functions hashlib knows).
_HASH_PREFERENCE: Final = ("sha-512", "sha-384", "sha-256", "sha-224", "sha-1")
#: Application data records read at a time once connected (none are expected: no data channel).
_READ_SIZE: Final = 1500


class DtlsRole(Enum):
    """Our side of the handshake: ``a=setup:passive`` makes us the server, ``active`` the client
    (RFC 5763 section 5, RFC 8842 section 5)."""

    SERVER = "server"
    CLIENT = "client"


class DtlsState(Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


def _records(data: bytes, mtu: int) -> list[bytes]:
    """Whole DTLS records of ``data`` packed into datagrams of at most ``mtu`` bytes.

    A memory BIO keeps no datagram boundaries: a flight comes out as one run of records. Records may
    share a datagram but must not be split across two (RFC 6347 section 4.1.1), so the run is cut at
    record boundaries. A record larger than ``mtu`` goes alone; bytes that do not parse as records
    (never seen from OpenSSL) go as one datagram rather than be lost.
    """
    out: list[bytes] = []
    start = position = 0
    size = len(data)
    while position < size:
        if size - position < _RECORD_HEADER:
            break
        end = position + _RECORD_HEADER + int.from_bytes(data[position + 11 : position + 13])
        if end > size:
            break
        if end - start > mtu and position > start:
            out.append(data[start:position])
            start = position
        position = end
    if start < size:
        out.append(data[start:])
    return out


class DtlsTransport:
    """One DTLS association of DTLS-SRTP (RFC 5764), client or server, over memory BIOs."""

    def __init__(
        self,
        certificate: DtlsCertificate,
        role: DtlsRole,
        remote_fingerprints: Sequence[Fingerprint],
        *,
        mtu: int = DEFAULT_MTU,
    ) -> None:
        if not remote_fingerprints:
            raise ValueError("the peer's certificate fingerprint is needed (RFC 8122 section 5)")
        self.role = role
        self.remote_fingerprints = tuple(remote_fingerprints)
        self.mtu = mtu
        self.state = DtlsState.NEW
        #: Why the handshake failed or the association closed, for logs and the session's state.
        self.reason: str | None = None
        #: The SRTP keys, once connected.
        self.keys: SrtpKeys | None = None
        self._ssl = SSL.Connection(certificate.context(), None)
        self._ssl.set_ciphertext_mtu(mtu)
        if role is DtlsRole.SERVER:
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()

    @property
    def protocol_version(self) -> str:
        return str(self._ssl.get_protocol_version_name())

    def start(self) -> list[bytes]:
        """Begin the handshake; a client's ClientHello comes back, a server waits for one."""
        if self.state is not DtlsState.NEW:
            return []
        self.state = DtlsState.CONNECTING
        return self._handshake()

    def receive(self, datagram: bytes) -> list[bytes]:
        """Take one datagram from the peer; return the datagrams to send back."""
        if self.state in (DtlsState.CLOSED, DtlsState.FAILED):
            return []
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
        self._ssl.bio_write(datagram)
        if self.state is DtlsState.CONNECTING:
            return self._handshake()
        return self._read_connected()

    def timeout(self) -> float | None:
        """Seconds until :meth:`handle_timeout` is due, or None when no flight awaits an answer.

        After the handshake OpenSSL may still keep its last flight for retransmission (RFC 6347
        section 4.2.4: the side that sent the last flight retransmits it on the peer's retransmission).
        """
        if self.state in (DtlsState.CLOSED, DtlsState.FAILED):
            return None
        timeout = self._ssl.DTLSv1_get_timeout()
        return float(timeout) if timeout is not None else None

    def handle_timeout(self) -> list[bytes]:
        """Retransmit the last flight if its timer ran out (RFC 6347 section 4.2.4.1)."""
        if self.state in (DtlsState.CLOSED, DtlsState.FAILED):
            return []
        try:
            self._ssl.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            # OpenSSL gives up after its retransmission limit.
            self._fail(f"handshake timed out ({exc})")
        return self._flush()

    def close(self) -> list[bytes]:
        """Send close_notify (RFC 5246 section 7.2.1) and stop; the datagrams to send come back."""
        if self.state in (DtlsState.CLOSED, DtlsState.FAILED):
            return []
        was_connected = self.state is DtlsState.CONNECTED
        self.state = DtlsState.CLOSED
        self.reason = self.reason or "closed by us"
        if not was_connected:
            return []
        try:
            self._ssl.shutdown()
        except SSL.Error:
            return []
        return self._flush()

    def _handshake(self) -> list[bytes]:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return self._flush()
        except SSL.Error as exc:
            self._fail(f"handshake failed ({exc})")
            # An alert may be pending for the peer; it should learn why.
            return self._flush()
        out = self._flush()
        self._connected()
        return out

    def _connected(self) -> None:
        certificate = self._ssl.get_peer_certificate(as_cryptography=True)
        if certificate is None:
            self._fail("the peer sent no certificate")
            return
        if not self._fingerprint_matches(certificate.public_bytes(Encoding.DER)):
            self._fail("the peer's certificate does not match its SDP fingerprint")
            return
        if self._ssl.get_selected_srtp_profile() != OPENSSL_PROFILE:
            self._fail("no SRTP protection profile was negotiated (RFC 5764 section 4.1.2)")
            return
        material = self._ssl.export_keying_material(EXPORTER_LABEL, KEYING_MATERIAL_LENGTH)
        self.keys = SrtpKeys.from_keying_material(material, server=self.role is DtlsRole.SERVER)
        self.state = DtlsState.CONNECTED

    def _fingerprint_matches(self, der: bytes) -> bool:
        """RFC 8122 section 5: take the offered fingerprints of the strongest hash function we know
        and accept the certificate if it matches one of them; unknown hash functions are skipped."""
        offered = {fingerprint.algorithm for fingerprint in self.remote_fingerprints}
        for algorithm in _HASH_PREFERENCE:
            if algorithm in offered:
                return any(
                    fingerprint.matches(der)
                    for fingerprint in self.remote_fingerprints
                    if fingerprint.algorithm == algorithm
                )
        return False

    def _read_connected(self) -> list[bytes]:
        # Once connected, DTLS carries nothing we use (no data channel): records are read only to
        # answer retransmitted handshake flights and to see close_notify. A record that fails its
        # MAC is discarded by OpenSSL (RFC 6347 section 4.1.2.7), which raises nothing.
        while True:
            try:
                self._ssl.recv(_READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.state = DtlsState.CLOSED
                self.reason = "closed by the peer"
                break
            except SSL.Error as exc:
                self._fail(f"connection failed ({exc})")
                break
        return self._flush()

    def _fail(self, reason: str) -> None:
        self.state = DtlsState.FAILED
        self.reason = reason

    def _flush(self) -> list[bytes]:
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(self._ssl.bio_read(65536))
            except SSL.WantReadError:
                break
        if not chunks:
            return []
        return _records(b"".join(chunks), self.mtu)
