"""Sending one MESSAGE on, as pure state: the requests to build and what their answers mean.

RFC 3428 makes MESSAGE a non-INVITE request outside any dialog: every copy is its own transaction,
with no Contact (section 4: it establishes nothing). To an agent the message goes to every registered
contact at once, as a parallel ring for text (:class:`Fanout`): the first 2xx delivers it. To a
customer it goes to the trunk's carrier, whose 401/407 is answered once with the trunk's credentials
(RFC 3261 22.2-22.3, same Call-ID and From tag, next CSeq) (:class:`CarrierMessage`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from enum import Enum

from services.signaling.sip.auth import ChallengeOutcome, DigestClient, DigestError
from services.signaling.sip.message import Request, Response, new_tag
from services.signaling.sip.transaction import new_branch
from shared.events import MessageFailure

#: Answers that say "not now" rather than "no": the message waits for the agent's next registration.
_UNREACHABLE = frozenset({408, 410, 430, 480, 503})


@dataclass(frozen=True, slots=True)
class MessageDraft:
    """A MESSAGE to build for one destination; :meth:`request` makes each attempt."""

    uri: str
    from_uri: str
    to_uri: str
    via_host: str
    transport: str
    content_type: str
    body: bytes
    from_name: str | None = None
    call_id: str = field(default_factory=lambda: secrets.token_hex(12))
    from_tag: str = field(default_factory=new_tag)
    user_agent: str | None = None

    def request(self, cseq: int = 1, auth: tuple[str, str] | None = None) -> Request:
        name = (self.from_name or "").replace('"', "").replace("\\", "")
        from_value = f'"{name}" <{self.from_uri}>' if name else f"<{self.from_uri}>"
        headers = [
            ("Via", f"SIP/2.0/{self.transport.upper()} {self.via_host};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{from_value};tag={self.from_tag}"),
            ("To", f"<{self.to_uri}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} MESSAGE"),
        ]
        if auth is not None:
            headers.append(auth)
        if self.user_agent:
            headers.append(("User-Agent", self.user_agent))
        headers.append(("Content-Type", self.content_type))
        return Request("MESSAGE", self.uri, headers, self.body)

    def to(self, uri: str) -> MessageDraft:
        """The same message for another contact: its own Call-ID and tag (a transaction of its own)."""
        return replace(self, uri=uri, call_id=secrets.token_hex(12), from_tag=new_tag())


@dataclass(frozen=True, slots=True)
class Delivered:
    sip_status: int
    #: Which branch accepted it (Fanout) or 0 (carrier).
    branch: int = 0


@dataclass(frozen=True, slots=True)
class Undelivered:
    """Nobody accepted it. ``unreachable``: nobody answered at all, or only "not now": it may wait
    for the agent's next registration; else it was refused and has failed."""

    sip_status: int
    reason: str
    unreachable: bool
    cause: MessageFailure = MessageFailure.REJECTED


class _Branch(Enum):
    WAITING = "waiting"
    FAILED = "failed"


class Fanout:
    """One message to every registered contact of its recipients at once; the first 2xx wins."""

    def __init__(self, branches: int) -> None:
        self._states: list[_Branch | int] = [_Branch.WAITING] * branches
        self._statuses: list[int | None] = [None] * branches
        self.outcome: Delivered | Undelivered | None = None
        if branches == 0:
            self.outcome = Undelivered(480, "Not registered", unreachable=True)

    def answered(self, branch: int, status: int | None) -> Delivered | Undelivered | None:
        """Branch ``branch`` answered finally with ``status`` (None: timed out or its connection
        failed). Returns the outcome once it is decided (only once), else None."""
        if self.outcome is not None or self._states[branch] is not _Branch.WAITING:
            return None
        if status is not None and 200 <= status < 300:
            self._states[branch] = status
            self.outcome = Delivered(status, branch)
            return self.outcome
        self._states[branch] = _Branch.FAILED
        self._statuses[branch] = status
        if any(state is _Branch.WAITING for state in self._states):
            return None
        self.outcome = _best_failure(self._statuses)
        return self.outcome


def _best_failure(statuses: list[int | None]) -> Undelivered:
    refusals = [s for s in statuses if s is not None and s not in _UNREACHABLE]
    if not refusals:
        return Undelivered(480, "Temporarily Unavailable", unreachable=True)
    # A decline beats everything (RFC 3261 16.7.6), then the lowest class.
    status = next((s for s in refusals if 600 <= s < 700), min(refusals))
    return Undelivered(status, f"Refused by the recipient ({status})", unreachable=False)


class CarrierMessage:
    """One MESSAGE to a customer through a trunk's carrier, answering its challenge once."""

    def __init__(self, draft: MessageDraft, credentials: DigestClient | None) -> None:
        self.draft = draft
        self.credentials = credentials
        self._cseq = 1
        self.current = draft.request(self._cseq)
        self.outcome: Delivered | Undelivered | None = None

    def answered(self, response: Response | None) -> Request | Delivered | Undelivered:
        """The next request to send (after a challenge), or the outcome."""
        if response is None:
            self.outcome = Undelivered(
                408, "The carrier did not answer", unreachable=False, cause=MessageFailure.CARRIER_ERROR
            )
            return self.outcome
        code = response.status_code
        if 200 <= code < 300:
            self.outcome = Delivered(code)
            return self.outcome
        if code in (401, 407):
            retry = self._challenged(response)
            if retry is not None:
                return retry
            self.outcome = Undelivered(
                code,
                f"The carrier refused the trunk's credentials ({code} {response.reason})"[:200],
                unreachable=False,
                cause=MessageFailure.CARRIER_AUTH_FAILED,
            )
            return self.outcome
        cause = MessageFailure.CARRIER_ERROR if code >= 500 else MessageFailure.REJECTED
        self.outcome = Undelivered(
            code, f"The carrier answered {code} {response.reason}"[:200], unreachable=False, cause=cause
        )
        return self.outcome

    def _challenged(self, response: Response) -> Request | None:
        if self.credentials is None:
            return None
        proxy = response.status_code == 407
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        answer_header = "Proxy-Authorization" if proxy else "Authorization"
        try:
            answer = self.credentials.answer(
                response.headers.get_all(header),
                "MESSAGE",
                str(self.current.uri),
                sent=self.current.headers.get_all(answer_header),
            )
        except DigestError:
            return None
        if answer.outcome is ChallengeOutcome.REJECTED:
            return None
        self._cseq += 1
        self.current = self.draft.request(self._cseq, (answer_header, answer.value))
        return self.current


__all__ = ["CarrierMessage", "Delivered", "Fanout", "MessageDraft", "Undelivered"]
