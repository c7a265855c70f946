"""The ICE-lite agent of one session: it answers connectivity checks and never sends any.

An ICE-lite agent (RFC 8445 section 2.5) has only host candidates, is always controlled, and answers
the full agent's Binding requests (RFC 8445 section 7.3) with short-term credentials (RFC 8489 section
9.1): USERNAME ``<our ufrag>:<their ufrag>``, MESSAGE-INTEGRITY keyed with our ice-pwd. STUN messages
are parsed and built with :mod:`aioice.stun`. The agent is pure: the mux hands it a parsed request,
its source address and the time, and sends the response it returns.

When we offer (an inbound call rings a browser), the browser's checks can arrive before its answer
reaches us through SIP. They carry MESSAGE-INTEGRITY keyed with *our* ice-pwd, so they can be
authenticated and must be answered at once (RFC 8445 section 7.3: the remote password is not needed
for the response); the agent remembers which remote ufrag each source used, so that once the answer
names the browser that won (a forked offer rings several), the others' sources can be dropped.
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
#: Sources remembered from checks that came before the answer (a few browsers, a few candidates each).
MAX_EARLY_SOURCES: Final = 32


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
        #: We offered and await the answer: checks naming any remote ufrag are authenticated by our pwd.
        self.awaiting_answer = False
        #: Before the answer: the remote ufrag each authenticated source used, oldest first.
        self.early_sources: dict[Address, str] = {}

    def restart(self, local: IceCredentials, remote: IceCredentials) -> None:
        """New credentials on both sides: an ICE restart (RFC 8445 section 9, RFC 8839 section 4.4.1.1.1).
        The nominated pair stays until the browser nominates anew: media keeps flowing meanwhile."""
        self.local = local
        self._key = local.pwd.encode()
        self.remote = remote

    def answered(self, remote: IceCredentials) -> list[Address]:
        """The answer to our offer named ``remote``: returns the sources whose early checks named another
        ufrag (a browser that lost a forked offer), forgotten here; the caller stops routing them."""
        self.remote = remote
        self.awaiting_answer = False
        losers = [source for source, ufrag in self.early_sources.items() if ufrag != remote.ufrag]
        self.early_sources.clear()
        if self.nominated in losers:
            self.nominated = None
        return losers

    def answer(self, request: stun.Message, source: Address, now: float) -> BindingResult:
        """Answer a Binding request already routed here by the first part of its USERNAME.

        Requests that fail authentication are dropped without a response: an error answer would only
        help a scanner guess ufrags, and RFC 8445 section 7.3 leaves silence to the agent's choice of
        error handling (RFC 8489 section 9.1.3's 401 is for clients that can retry, which checks do
        with new credentials, never with the same ones).
        """
        remote = self.remote
        username = request.attributes.get("USERNAME")
        if not isinstance(username, str):
            return _IGNORED
        if remote is not None:
            valid = username == f"{self.local.ufrag}:{remote.ufrag}"
        else:
            ours, _, theirs = username.partition(":")
            valid = self.awaiting_answer and ours == self.local.ufrag and bool(theirs)
        if (
            not valid
            or not isinstance(request.attributes.get("MESSAGE-INTEGRITY"), bytes)
            or not request.check_message_integrity(self._key)
        ):
            return _IGNORED
        if remote is None:
            early = self.early_sources
            early.pop(source, None)
            early[source] = username.partition(":")[2]
            if len(early) > MAX_EARLY_SOURCES:
                del early[next(iter(early))]
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
