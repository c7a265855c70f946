"""The worker's DTLS identity: one self-signed certificate, its fingerprint, one OpenSSL context.

WebRTC authenticates DTLS by the certificate fingerprint carried in the signed-over-SIP SDP, not by a
CA (RFC 8827 section 6.5, RFC 5763 section 5), so a self-signed certificate is what browsers send too.
One per worker is enough: every session shares it and its ``SSL.Context``.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from services.media.webrtc.srtp import OPENSSL_PROFILE
from shared.sdp import Fingerprint

#: What browsers (and aiortc) accept with an ECDSA certificate, forward secret, for DTLS 1.2.
CIPHERS: Final = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
)
#: Chromium's own certificates live 30 days; a worker regenerates its certificate before that.
LIFETIME: Final = datetime.timedelta(days=30)


def _accept_any(connection: SSL.Connection, certificate: object, error: int, depth: int, ok: int) -> bool:
    # The peer's certificate is self-signed by design: it is checked against the SDP fingerprint
    # once the handshake is done (RFC 5763 section 5), not against a CA here.
    return True


class DtlsCertificate:
    """An ECDSA P-256 key and its self-signed certificate (what Chromium itself generates)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate
        #: The ``a=fingerprint`` of our answers (RFC 8122 section 5), upper-case colon hex.
        self.fingerprint = Fingerprint.of_certificate(certificate.public_bytes(Encoding.DER), "sha-256")
        self._context: SSL.Context | None = None

    @classmethod
    def generate(cls, lifetime: datetime.timedelta = LIFETIME) -> DtlsCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        # A random common name, as browsers use: nothing about the worker is disclosed.
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, secrets.token_hex(16))])
        now = datetime.datetime.now(tz=datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + lifetime)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def expires_at(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    def context(self) -> SSL.Context:
        """The DTLS context every session of this certificate uses (created once).

        ``VERIFY_PEER`` with ``VERIFY_FAIL_IF_NO_PEER_CERT`` makes a server ask for, and insist on, the
        client's certificate (RFC 5763 section 5: both ends present one); use_srtp offers the SRTP
        profile (RFC 5764 section 4.1); no session tickets (nothing resumes a WebRTC DTLS session);
        ``OP_NO_QUERY_MTU`` because memory BIOs have no path MTU to ask: we set one ourselves.
        """
        if self._context is None:
            context = SSL.Context(SSL.DTLS_METHOD)
            context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
            context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
            context.use_certificate(self.certificate)
            context.use_privatekey(self.key)
            context.set_cipher_list(CIPHERS)
            context.set_tlsext_use_srtp(OPENSSL_PROFILE)
            self._context = context
        return self._context
