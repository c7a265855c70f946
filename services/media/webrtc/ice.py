"""The ICE-lite agent of one session: it answers connectivity checks and never sends any.

An ICE-lite agent (RFC 8445 section 2.5) has only host candidates, is always controlled, and answers
the full agent's Binding requests (RFC 8445 section 7.3) with short-term credentials (RFC 8489 section
9.1): USERNAME ``<our ufrag>:<their ufrag>``, MESSAGE-INTEGRITY keyed with our ice-pwd. STUN messages
are parsed and built with :mod:`aioice.stun`. The agent is pure: the mux hands it a parsed request,
its source address and the time, and sends the response it returns.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from aioice import stun

from shared.sdp import IceCredentials

#: A datagram's source as asyncio gives it: (host, port), plus flow info and scope id for IPv6.
Address: TypeAlias = tuple[Any, ...]

#: RFC 8839 section 5.4: ice-char is ALPHA / DIGIT / "+" / "/".
_ICE_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: RFC 8839 section 5.4 wants at least 4 and 22 characters, and RFC 8445 section 5.3 at least 24 and
#: 128 bits of randomness; 8 and 24 ice-chars carry 48 and 144 bits.
UFRAG_LENGTH: Final = 8
PWD_LENGTH: Final = 24
#: RFC 7675 section 5.1: consent expires 30 s after the last authenticated check.
CONSENT_TIMEOUT: Final = 30.0
#: RFC 8445 section 7.3.1.1: answered to a peer that also claims the controlled role.
ROLE_CONFLICT: Final = (487, "Role Conflict")


def generate_credentials() -> IceCredentials:
    """Fresh ``ice-ufrag`` and ``ice-pwd`` (RFC 8839 section 5.4, RFC 8445 section 5.3)."""
    return IceCredentials(
        "".join(secrets.choice(_ICE_CHARS) for _ in range(UFRAG_LENGTH)),
        "".join(secrets.choice(_ICE_CHARS) for _ in range(PWD_LENGTH)),
    )


@dataclass(frozen=True, slots=True)
class BindingResult:
    """What a Binding request led to: the bytes to send back (if any), whether it authenticated (then
    its source belongs to the session), nominated its pair (RFC 8445 section 7.3.1.5), or was answered
    with a role conflict (RFC 8445 section 7.3.1.1)."""

    response: bytes | None
    authenticated: bool
    nominated: bool = False
    role_conflict: bool = False


_IGNORED: Final = BindingResult(None, authenticated=False)


class IceLiteAgent:
    """The controlled, lite side of one session's ICE (RFC 8445 sections 6.1.1 and 7.3)."""

    def __init__(self, local: IceCredentials) -> None:
        self.local = local
        self._key = local.pwd.encode()
        #: The browser's credentials, from its offer.
        self.remote: IceCredentials | None = None
        #: When the last authenticated check arrived (monotonic seconds): consent freshness (RFC 7675
        #: section 5.1) and an input of the media timeout.
        self.last_check_at: float | None = None
        #: The pair the browser nominated last (USE-CANDIDATE); a lite agent sends media there
        #: (RFC 8445 section 8.2).
        self.nominated: Address | None = None
        self.checks = 0

    def answer(self, request: stun.Message, source: Address, now: float) -> BindingResult:
        """Answer a Binding request already routed here by the first part of its USERNAME.

        Requests that fail authentication are dropped without a response: an error answer would only
        help a scanner guess ufrags, and RFC 8445 section 7.3 leaves silence to the agent's choice of
        error handling (RFC 8489 section 9.1.3's 401 is for clients that can retry, which checks do
        with new credentials, never with the same ones).
        """
        remote = self.remote
        username = request.attributes.get("USERNAME")
        if (
            remote is None
            or not isinstance(username, str)
            or username != f"{self.local.ufrag}:{remote.ufrag}"
            or not isinstance(request.attributes.get("MESSAGE-INTEGRITY"), bytes)
            or not request.check_message_integrity(self._key)
        ):
            return _IGNORED
        self.last_check_at = now
        self.checks += 1
        if "ICE-CONTROLLED" in request.attributes:
            # Both sides claim to be controlled. A lite agent cannot take the controlling role
            # (RFC 8445 section 6.1.1), so it keeps its role and answers 487 as if its tie-breaker
            # were the larger one (RFC 8445 section 7.3.1.1); the full agent switches.
            error = stun.Message(
                stun.Method.BINDING,
                stun.Class.ERROR,
                transaction_id=request.transaction_id,
                attributes={"ERROR-CODE": ROLE_CONFLICT},
            )
            error.add_message_integrity(self._key)
            return BindingResult(bytes(error), authenticated=True, role_conflict=True)
        nominated = "USE-CANDIDATE" in request.attributes
        if nominated:
            self.nominated = source
        response = stun.Message(
            stun.Method.BINDING,
            stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": (source[0], source[1])},
        )
        # add_message_integrity appends FINGERPRINT after it, as RFC 8445 section 7.3 requires.
        response.add_message_integrity(self._key)
        return BindingResult(bytes(response), authenticated=True, nominated=nominated)

    def consent_expired(self, now: float, timeout: float = CONSENT_TIMEOUT) -> bool:
        """No authenticated check for ``timeout`` seconds (RFC 7675 section 5.1); before the first
        check, consent has not expired (the caller bounds how long it waits for one)."""
        return self.last_check_at is not None and now - self.last_check_at > timeout
