"""SRTP and SRTCP for one WebRTC leg (RFC 3711) with keys from DTLS-SRTP (RFC 5764 section 4.2).

Only ``SRTP_AES128_CM_HMAC_SHA1_80`` is negotiated (RFC 5764 section 4.1.2): every browser offers it,
and it is the profile measured in PEERS.md. RTCP is multiplexed on the RTP port (RFC 5761) and uses
the same master key and salt (RFC 3711 section 4.3.2 derives its session keys apart).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import pylibsrtp

#: RFC 5764 section 4.1.2: SRTP_AES128_CM_HMAC_SHA1_80 has a 128-bit key and a 112-bit salt.
KEY_LENGTH: Final = 16
SALT_LENGTH: Final = 14
#: The length of the DTLS-SRTP exporter output (RFC 5764 section 4.2): two keys and two salts.
KEYING_MATERIAL_LENGTH: Final = 2 * (KEY_LENGTH + SALT_LENGTH)
#: The name OpenSSL knows the profile by (``SSL_CTX_set_tlsext_use_srtp``).
OPENSSL_PROFILE: Final = b"SRTP_AES128_CM_SHA1_80"
#: Replay window (RFC 3711 section 3.3.2 asks for at least 64): browsers reorder and retransmit (NACK).
REPLAY_WINDOW: Final = 1024


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """Master key and salt of each direction, each ``key || salt`` as libsrtp takes them."""

    inbound: bytes
    outbound: bytes

    def __post_init__(self) -> None:
        for name in ("inbound", "outbound"):
            if len(getattr(self, name)) != KEY_LENGTH + SALT_LENGTH:
                raise ValueError(f"{name} is a {KEY_LENGTH}-byte key and a {SALT_LENGTH}-byte salt")

    @classmethod
    def from_keying_material(cls, material: bytes, *, server: bool) -> SrtpKeys:
        """Split the exporter output ``EXTRACTOR-dtls_srtp`` (RFC 5764 section 4.2).

        It reads client_write_SRTP_master_key, server_write_SRTP_master_key, client salt, server salt.
        The DTLS client protects with the client's key and salt and the server with the server's, so
        as the server (``server=True``) we receive with the client's and send with ours.
        """
        if len(material) != KEYING_MATERIAL_LENGTH:
            raise ValueError(
                f"DTLS-SRTP keying material is {KEYING_MATERIAL_LENGTH} bytes, not {len(material)}"
            )
        client_key = material[:KEY_LENGTH]
        server_key = material[KEY_LENGTH : 2 * KEY_LENGTH]
        client_salt = material[2 * KEY_LENGTH : 2 * KEY_LENGTH + SALT_LENGTH]
        server_salt = material[2 * KEY_LENGTH + SALT_LENGTH :]
        client, server_side = client_key + client_salt, server_key + server_salt
        if server:
            return cls(inbound=client, outbound=server_side)
        return cls(inbound=server_side, outbound=client)


def _session(key: bytes, ssrc_type: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=ssrc_type, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    )
    policy.window_size = REPLAY_WINDOW
    # A relay may legitimately send the same packet twice (an RTX-less retransmission); libsrtp
    # refuses that unless told (RFC 3711 section 3.3.2 protects the receiver, not the sender).
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


class SrtpContext:
    """Both directions of one leg: unprotect what the peer sends, protect what we send (RFC 3711).

    Any SSRC is accepted inbound and used outbound (libsrtp's ``ssrc_any_*`` templates): a browser
    picks its SSRCs and may change them. libsrtp adds an inbound stream only after a packet of it
    authenticated, so forged SSRCs cost no memory. Failures raise :class:`pylibsrtp.Error`
    (authentication, replay) or :class:`ValueError` (a packet too long for libsrtp's buffer).
    """

    __slots__ = ("_inbound", "_outbound", "protect", "protect_rtcp", "unprotect", "unprotect_rtcp")

    def __init__(self, keys: SrtpKeys) -> None:
        self._inbound = _session(keys.inbound, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._outbound = _session(keys.outbound, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        # Bound methods kept as attributes: the packet path calls them per packet.
        self.unprotect: Callable[[bytes], bytes] = self._inbound.unprotect
        self.unprotect_rtcp: Callable[[bytes], bytes] = self._inbound.unprotect_rtcp
        self.protect: Callable[[bytes], bytes] = self._outbound.protect
        self.protect_rtcp: Callable[[bytes], bytes] = self._outbound.protect_rtcp
