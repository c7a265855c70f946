"""A trunk's registration with its carrier (RFC 3261 10.2) and its OPTIONS keep-alive, sans-I/O.

:class:`RegistrationClient` is a state machine: it never sends, never sleeps, never reads a clock.
Every input takes ``now`` (seconds, the caller's monotonic clock) and returns a list of
:data:`Action` values: :class:`SendRequest` (hand this request to a client transaction towards the
carrier) and :class:`TrunkStatus` (the trunk's state changed: publish a ``TrunkRegistration``
event from :meth:`TrunkStatus.data`). The caller feeds back, for every request it was told to send,
exactly one outcome: the final response (:meth:`RegistrationClient.on_response`), the transaction
timeout (:meth:`RegistrationClient.on_timeout`, Timer F, RFC 3261 17.1.2.2) or a transport error
(:meth:`RegistrationClient.on_transport_error`, RFC 3261 8.1.3.1); and it calls
:meth:`RegistrationClient.on_timer` when :meth:`RegistrationClient.next_deadline` has passed.

What it does, and why:

* One REGISTER at a time per binding (RFC 3261 10.2: no new registration before the previous one
  has its final response). Call-ID and From tag stay the same for every refresh of one binding,
  CSeq grows by one per request (10.2.4); Contact carries ``expires`` and so does ``Expires``.
* 401/407 are answered once per challenge with :class:`DigestClient`; credentials refused again
  fail with "Authentication with the carrier failed". ``stale=true`` is a new nonce, not a failure
  (RFC 7616 3.3). A 407 from a proxy and then a 401 from the registrar are both answered.
* 423 is retried with Min-Expires, which later refreshes keep (10.2.8).
* 200: the granted interval is our Contact's ``expires``, else Expires (10.2.4); a registrar may
  shorten it, never lengthen what we asked for. The refresh goes out at :func:`refresh_delay`.
* Failures (timeouts, transport errors, 3xx-6xx, refused credentials) back off exponentially with
  full jitter (:class:`Backoff`), or exactly as long as a Retry-After says (RFC 3261 21.5.4, 20.33).
  A failed refresh reports ``failed`` at once, although the carrier may keep the old binding until
  it expires: a registrar that refuses or does not answer is what an operator must see now.
  Retries stay ``failed`` (with the new ``retry_in_s``) until one succeeds; they do not flip the
  trunk back to ``registering``.
* :meth:`RegistrationClient.stop` removes our binding only (``Contact: <ours>;expires=0``, never
  ``*`` which would also remove the carrier account's other devices, 10.2.2) and reports
  ``unregistered`` once the registrar has answered.
* A new configuration that moves the binding (registrar, AOR, Contact) removes the old binding
  and registers the new one under a new Call-ID; new credentials or interval re-register the same
  binding at once.
* OPTIONS every ``keepalive_s`` while registered, and always for trunks that do not register
  (IP-authenticated carriers). Any final answer but 408 proves the carrier's SIP stack is there
  (many answer OPTIONS with 403 or 404); ``keepalive_failures`` timeouts in a row mark the trunk
  failed and start a new registration at once.
"""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal, TypeAlias

from services.signaling.sip import (
    REASON_PHRASES,
    Address,
    Parameters,
    Request,
    Response,
    SipParseError,
    SipUri,
    new_tag,
    parse_uri,
)
from services.signaling.sip.auth import (
    Algorithm,
    ChallengeOutcome,
    DigestChallenge,
    DigestClient,
    DigestError,
)
from services.signaling.sip.headers import parse_expires
from services.signaling.sip.uri import escape_user
from services.signaling.sip.via import MAGIC_COOKIE
from shared.events import TrunkRegistrationData, TrunkState

__all__ = [
    "AUTH_FAILED",
    "Action",
    "Backoff",
    "Purpose",
    "RegistrationClient",
    "SendRequest",
    "TrunkConfig",
    "TrunkStatus",
    "refresh_delay",
]

Transport: TypeAlias = Literal["udp", "tcp", "tls"]

#: The reason reported when the carrier refuses our credentials.
AUTH_FAILED: Final = "Authentication with the carrier failed"

_MAX_FORWARDS: Final = "70"
# Challenges answered for one request chain: a proxy's 407, the registrar's 401 and a stale nonce
# for each. More than that is a carrier looping us, not authentication.
_MAX_AUTH_ROUNDS: Final = 4
# Timer F is 64*T1 = 32 s (RFC 3261 17.1.2.2); a request unanswered this long was lost by the caller.
_DEFAULT_REQUEST_GUARD_S: Final = 40.0
# A Retry-After beyond a day is a carrier's misconfiguration; we come back after a day anyway.
_MAX_RETRY_AFTER_S: Final = 86400
_DELTA_SECONDS_RE: Final = re.compile(r"[ \t]*([0-9]+)")
_DEFAULT_PORTS: Final[dict[str, int]] = {"udp": 5060, "tcp": 5060, "tls": 5061}
_TEXT_FIELDS: Final = ("trunk_id", "registrar_host", "aor_user", "aor_domain", "auth_username", "user_agent")


def _bad_text(value: str) -> bool:
    return any(ch in value for ch in "\r\n\x00")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkConfig:
    """One trunk as the API stores it, reduced to what registration and keep-alive need.

    ``contact`` is the URI the carrier reaches us at: our public address (a private or pod
    address there is what makes calls one-way), e.g. ``sip:echodesk@203.0.113.5:5060``.
    ``aor_domain`` defaults to the registrar host and ``auth_username`` to ``aor_user``. Give
    ``password`` or ``ha1`` (per base algorithm, for the carrier's realm), or neither for a carrier
    that registers without authentication. ``realm``, when set, is the only realm answered.
    ``register=False`` is an IP-authenticated trunk: no REGISTER, only the OPTIONS probe.
    ``keepalive_s=0`` turns the probe off.
    """

    trunk_id: str
    registrar_host: str
    contact: str
    registrar_port: int | None = None
    transport: Transport = "udp"
    register: bool = True
    aor_user: str = ""
    aor_domain: str = ""
    auth_username: str = ""
    password: str | None = field(default=None, repr=False)
    ha1: Mapping[Algorithm, str] | None = field(default=None, repr=False, hash=False)
    realm: str | None = None
    expires_s: int = 3600
    keepalive_s: float = 30.0
    keepalive_failures: int = 3
    user_agent: str = "EchoDesk Voice"

    def __post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            if _bad_text(getattr(self, name)):
                raise ValueError(f"{name} contains a line break or NUL")
        if self.transport not in _DEFAULT_PORTS:
            raise ValueError(f"transport must be one of {', '.join(_DEFAULT_PORTS)}")
        if self.registrar_port is not None and not 0 < self.registrar_port < 65536:
            raise ValueError("registrar_port must be within 1..65535")
        if not 0 < self.expires_s <= 0xFFFFFFFF:
            raise ValueError("expires_s must be positive (0 would remove the binding)")
        if self.keepalive_s < 0 or self.keepalive_failures < 1:
            raise ValueError("keepalive_s must not be negative and keepalive_failures at least 1")
        if self.password is not None and self.ha1 is not None:
            raise ValueError("give password or ha1, not both")
        if self.register and not self.aor_user:
            raise ValueError("a trunk that registers needs aor_user")
        registrar = _parse_sip_uri(f"sip:{self.registrar_host}", "registrar_host")
        if registrar.port is not None or registrar.user is not None or registrar.params:
            raise ValueError(
                "registrar_host is a host name or address alone; the port goes in registrar_port"
            )
        _parse_sip_uri(f"sip:{self.domain}", "aor_domain")
        self.aor  # noqa: B018  (validates aor_user)
        self.contact_uri  # noqa: B018
        _digest_client(self)  # DigestError (a ValueError) for control characters in the secrets

    @property
    def domain(self) -> str:
        return self.aor_domain or self.registrar_host

    @property
    def port(self) -> int:
        return self.registrar_port or _DEFAULT_PORTS[self.transport]

    @property
    def registrar(self) -> str:
        """The registrar as the ``trunk.registration`` event names it."""
        return f"sip:{self.registrar_host}:{self.port};transport={self.transport}"

    @property
    def request_uri(self) -> SipUri:
        """The REGISTER Request-URI: the domain, without user (RFC 3261 10.2)."""
        return _parse_sip_uri(f"sip:{self.domain}", "aor_domain")

    @property
    def aor(self) -> SipUri:
        """The address of record, To and From of our REGISTER (RFC 3261 10.2)."""
        user = escape_user(self.aor_user) + "@" if self.aor_user else ""
        return _parse_sip_uri(f"sip:{user}{self.domain}", "aor_user")

    @property
    def contact_uri(self) -> SipUri:
        return _parse_sip_uri(self.contact, "contact")


def _parse_sip_uri(text: str, name: str) -> SipUri:
    try:
        uri = parse_uri(text)
    except SipParseError:
        raise ValueError(f"{name} does not make a SIP URI: {text!r}") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{name} is not a sip: or sips: URI: {text!r}")
    return uri


def _binding_identity(config: TrunkConfig) -> tuple[object, ...]:
    """What names one binding at one registrar: changing any of it means a new registration."""
    return (
        config.register,
        config.registrar_host.lower(),
        config.port,
        config.transport,
        config.aor_user,
        config.domain.lower(),
        config.contact,
    )


def _secrets(config: TrunkConfig) -> tuple[object, ...]:
    """What a registration of the same binding must be redone for."""
    ha1 = None if config.ha1 is None else sorted(config.ha1.items())
    return (config.auth_username, config.password, ha1, config.realm, config.expires_s)


def _digest_client(config: TrunkConfig) -> DigestClient | None:
    if config.password is None and config.ha1 is None:
        return None
    return DigestClient(
        config.auth_username or config.aor_user,
        password=config.password,
        ha1=config.ha1,
        realm=config.realm,
    )


# --- timing ---------------------------------------------------------------------------------------


def refresh_delay(granted_s: float) -> float:
    """Seconds from a 200 to the refresh of a binding granted for ``granted_s`` seconds.

    The refresh leaves 10% of the interval or 60 s, whichever is more, before the binding expires,
    but never goes out before half of it. 60 s covers a whole lost transaction (Timer F, 32 s) plus
    the challenge round trip that follows, so one refresh can fail and be retried without the
    carrier dropping us; 10% keeps a long interval from living on its last minute (3600 s:
    refreshed after 3240 s). Half is the floor for short intervals (60 s: refreshed after 30 s).
    """
    return max(granted_s / 2, granted_s - max(60.0, granted_s / 10))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter between failed registrations.

    Attempt ``n`` (0 for the first failure) waits a uniform draw from
    ``[0, min(cap_s, base_s * 2**n)]``, raised to ``floor_s``. Full jitter spreads the trunks of
    every gateway that lost a carrier at the same moment. The floor keeps a refused REGISTER from
    being repeated within the second, which carriers' own flood protection punishes. 30 s doubling
    to a 30 min cap: a wrong password costs the carrier a handful of attempts an hour.
    """

    base_s: float = 30.0
    cap_s: float = 1800.0
    floor_s: float = 5.0

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and 0 <= self.floor_s <= self.cap_s and self.base_s <= self.cap_s):
            raise ValueError("need base_s > 0 and 0 <= floor_s <= cap_s, base_s <= cap_s")

    def delay(self, attempt: int, rng: random.Random) -> float:
        # 2.0 ** 1000 is still finite; base_s times it may be inf, which min() turns into cap_s.
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(max(attempt, 0), 1000))
        return min(self.cap_s, max(self.floor_s, rng.uniform(0.0, ceiling)))


# --- actions --------------------------------------------------------------------------------------


class Purpose(StrEnum):
    REGISTER = "register"
    UNREGISTER = "unregister"
    KEEPALIVE = "keepalive"


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send ``request`` in a new client transaction to ``host``:``port`` over ``transport``.

    The top Via carries a fresh branch (RFC 3261 8.1.1.7) and our Contact's address as sent-by;
    the transport layer may rewrite sent-by with the address it really sends from.
    """

    request: Request
    host: str
    port: int
    transport: Transport
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """The trunk's state as the ``trunk.registration`` event carries it."""

    state: TrunkState
    registrar: str
    sip_status: int | None = None
    reason: str | None = None
    expires_s: int | None = None
    retry_in_s: float | None = None

    def data(self) -> TrunkRegistrationData:
        return TrunkRegistrationData(
            state=self.state,
            registrar=self.registrar,
            sip_status=self.sip_status,
            reason=self.reason,
            expires_s=self.expires_s,
            retry_in_s=self.retry_in_s,
        )


Action: TypeAlias = SendRequest | TrunkStatus


# --- requests -------------------------------------------------------------------------------------


def _via(config: TrunkConfig) -> str:
    contact = config.contact_uri
    sent_by = contact.host if contact.port is None else f"{contact.host}:{contact.port}"
    # rport: the carrier answers to the address it saw, which is what works behind NAT (RFC 3581).
    return f"SIP/2.0/{config.transport.upper()} {sent_by};rport;branch={MAGIC_COOKIE}{secrets.token_hex(12)}"


def _new_call_id() -> str:
    # RFC 3261 8.1.1.4: globally unique; 128 random bits need no host part.
    return secrets.token_hex(16)


@dataclass(slots=True)
class _Pending:
    """A request we were told to send and whose outcome we wait for."""

    request: Request
    purpose: Purpose
    sent_at: float
    call_id: str
    cseq: int
    method: str
    expires: int = 0
    auth_rounds: int = 0
    #: (credentials header, realm) answered from a challenge to the request just before this one.
    fresh: frozenset[tuple[str, str]] = frozenset()

    def key(self) -> tuple[str, int, str]:
        return (self.call_id, self.cseq, self.method)


@dataclass(slots=True)
class _Outcome:
    """A final response, or what the transaction layer reports instead of one."""

    status: int | None
    phrase: str
    response: Response | None = None

    @property
    def success(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Binding:
    """One registration: our Contact for one AOR at one registrar, under one Call-ID (10.2.4)."""

    def __init__(self, config: TrunkConfig) -> None:
        self.config = config
        self.call_id = _new_call_id()
        self.from_tag = new_tag()
        self.cseq = 0
        self.digest = _digest_client(config)
        self.expires = config.expires_s
        self.pending: _Pending | None = None
        self.bound_until: float | None = None
        #: Challenges being answered in the current request chain, by (credentials header, realm).
        self.challenges: dict[tuple[str, str], DigestChallenge] = {}
        #: Whether this binding's removal decides the trunk's status (it does after stop()).
        self.report = False

    def update_secrets(self, config: TrunkConfig) -> None:
        self.config = config
        self.digest = _digest_client(config)
        self.expires = config.expires_s
        self.challenges.clear()

    def bound(self, now: float) -> bool:
        return self.bound_until is not None and now < self.bound_until

    def target(self) -> tuple[object, ...]:
        config = self.config
        return (config.registrar_host.lower(), config.port, config.transport, config.aor.address_of_record)

    def register(
        self,
        now: float,
        purpose: Purpose,
        *,
        credentials: Iterable[tuple[str, str]] = (),
        fresh: frozenset[tuple[str, str]] = frozenset(),
        auth_rounds: int = 0,
    ) -> SendRequest:
        """A REGISTER for this binding, ``expires=0`` when ``purpose`` is UNREGISTER (10.2.2)."""
        config = self.config
        expires = 0 if purpose is Purpose.UNREGISTER else self.expires
        self.cseq += 1
        aor = Address(config.aor)
        contact = Address(config.contact_uri, params=Parameters([("expires", str(expires))]))
        headers = [
            ("Via", _via(config)),
            ("Max-Forwards", _MAX_FORWARDS),
            ("From", str(aor.with_tag(self.from_tag))),
            ("To", str(aor)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", str(contact)),
            ("Expires", str(expires)),
            *credentials,
            ("User-Agent", config.user_agent),
        ]
        request = Request("REGISTER", config.request_uri, headers)
        self.pending = _Pending(
            request, purpose, now, self.call_id, self.cseq, "REGISTER", expires, auth_rounds, fresh
        )
        return SendRequest(request, _host(config), config.port, config.transport, purpose)


def _host(config: TrunkConfig) -> str:
    # A URI writes an IPv6 address in brackets (RFC 3261 25.1); a socket wants it bare.
    return config.registrar_host.strip("[]")


def _options(config: TrunkConfig, now: float) -> tuple[SendRequest, _Pending]:
    """An out-of-dialog OPTIONS to the carrier (RFC 3261 11.1): a new Call-ID each time (8.1.1.4)."""
    uri = SipUri(config.registrar_host, port=config.registrar_port)
    contact = config.contact_uri
    sender = config.aor if config.aor_user else SipUri(contact.host, port=contact.port)
    call_id = _new_call_id()
    headers = [
        ("Via", _via(config)),
        ("Max-Forwards", _MAX_FORWARDS),
        ("From", str(Address(sender).with_tag(new_tag()))),
        ("To", str(Address(uri))),
        ("Call-ID", call_id),
        ("CSeq", "1 OPTIONS"),
        ("Contact", str(Address(contact))),
        ("Accept", "application/sdp"),
        ("User-Agent", config.user_agent),
    ]
    request = Request("OPTIONS", uri, headers)
    send = SendRequest(request, _host(config), config.port, config.transport, Purpose.KEEPALIVE)
    return send, _Pending(request, Purpose.KEEPALIVE, now, call_id, 1, "OPTIONS")


# --- reading responses ----------------------------------------------------------------------------


def _message_key(message: Request | Response) -> tuple[str, int, str] | None:
    try:
        cseq = message.cseq
        return (message.call_id, cseq.seq, cseq.method)
    except SipParseError:
        return None


def _same_contact(a: SipUri, b: SipUri) -> bool:
    # Registrars add parameters (transport, ob) or rewrite case; user, host and port are ours.
    if a == b:
        return True
    return a.user == b.user and a.host.lower() == b.host.lower() and (a.port or 5060) == (b.port or 5060)


def _granted_expires(response: Response, contact: SipUri, requested: int) -> int:
    """The interval the registrar granted our binding (RFC 3261 10.2.4), never above ``requested``."""
    try:
        contacts = response.contacts
    except SipParseError:
        contacts = ()
    if contacts != "*":
        for address in contacts:
            uri = address.uri
            if isinstance(uri, SipUri) and _same_contact(uri, contact):
                try:
                    value = address.expires
                except SipParseError:
                    value = None
                if value is not None:
                    return min(value, requested)
    try:
        value = response.expires
    except SipParseError:
        value = None
    return requested if value is None else min(value, requested)


def _delta_seconds(response: Response, name: str) -> int | None:
    """The leading delta-seconds of ``name`` (Retry-After carries a comment and parameters after it,
    RFC 3261 20.33; Min-Expires is only the number, 20.23)."""
    value = response.headers.get(name)
    if value is None:
        return None
    match = _DELTA_SECONDS_RE.match(value)
    if match is None:
        return None
    try:
        return parse_expires(match.group(1))
    except SipParseError:
        return None


def _refusal(outcome: _Outcome) -> str:
    """A person's reading of a failed REGISTER."""
    status = outcome.status
    if status is None:
        return f"Could not reach the carrier's registrar: {outcome.phrase}"
    said = f"{status} {outcome.phrase}".rstrip()
    if status == 403:
        return f"The carrier refused the registration ({said}): check the username and the account"
    if status == 404:
        return f"The carrier does not know this account ({said}): check the user and the domain"
    if status == 408:
        return f"The carrier's registrar did not answer ({said})"
    if status == 423:
        return f"The carrier asked for a registration interval we cannot use ({said})"
    if status == 503:
        return f"The carrier is unavailable for now ({said})"
    if 300 <= status < 400:
        return f"The carrier redirected the registration ({said}), which a trunk does not follow"
    if 500 <= status < 600:
        return f"The carrier's registrar failed ({said})"
    if status >= 600:
        return f"The carrier declined the registration ({said})"
    return f"The carrier rejected the registration ({said})"


def _response_outcome(response: Response) -> _Outcome:
    phrase = response.reason or REASON_PHRASES.get(response.status_code, "")
    return _Outcome(response.status_code, phrase, response)


_TIMEOUT: Final = _Outcome(408, REASON_PHRASES[408])


# --- the state machine ----------------------------------------------------------------------------


class RegistrationClient:
    """Registration and keep-alive of one trunk towards its carrier. See the module docstring.

    ``rng`` draws the backoff jitter (inject a seeded ``random.Random`` in tests).
    ``request_guard_s`` treats a request whose outcome the caller never reported as timed out.
    """

    def __init__(
        self,
        config: TrunkConfig,
        *,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        request_guard_s: float = _DEFAULT_REQUEST_GUARD_S,
    ) -> None:
        self._config = config
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._guard_s = request_guard_s
        self._running = False
        self._binding: _Binding | None = None
        self._retiring: list[_Binding] = []
        self._status: TrunkStatus | None = None
        # Registration: when the next REGISTER of the current binding is due, whether the last
        # one succeeded, how many failed in a row, and whether a config change awaits the one in
        # flight.
        self._register_at: float | None = None
        self._registered = False
        self._attempt = 0
        self._restart = False
        # Keep-alive.
        self._probe: _Pending | None = None
        self._probe_at: float | None = None
        self._probe_failures = 0

    # --- what the caller reads -------------------------------------------------------------------

    @property
    def config(self) -> TrunkConfig:
        return self._config

    @property
    def status(self) -> TrunkStatus | None:
        """The last status reported; None before the first."""
        return self._status

    @property
    def running(self) -> bool:
        return self._running

    @property
    def finished(self) -> bool:
        """Stopped, and no removal of a binding still waits for the carrier: the object may go."""
        return not self._running and not self._retiring

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` has something to do; None when only a reported outcome will."""
        deadlines: list[float] = []
        for pending in self._pendings():
            deadlines.append(pending.sent_at + self._guard_s)
        binding = self._binding
        if (
            self._register_at is not None
            and binding is not None
            and binding.pending is None
            and not self._blocked(binding)
        ):
            deadlines.append(self._register_at)
        if self._probe_at is not None and self._probe is None and self._probing():
            deadlines.append(self._probe_at)
        return min(deadlines, default=None)

    # --- inputs ----------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Register (or, for a trunk that does not, start probing). Nothing when already running."""
        if self._running:
            return []
        out: list[Action] = []
        self._running = True
        for binding in self._retiring:
            # The new registration owns the status now; old removals finish quietly.
            binding.report = False
        self._begin(now, out)
        self._advance(now, out)
        return out

    def stop(self, now: float) -> list[Action]:
        """Remove our binding (trunk disabled or deleted); ``unregistered`` is reported when the
        carrier has answered, or at once when there is nothing to remove."""
        if not self._running:
            return []
        out: list[Action] = []
        self._running = False
        self._reset_registration()
        self._reset_probe()
        binding, self._binding = self._binding, None
        if binding is None or not self._retire(binding, now, out, report=True):
            self._report(TrunkStatus(TrunkState.UNREGISTERED, self._config.registrar), out)
        return out

    def reconfigure(self, config: TrunkConfig, now: float) -> list[Action]:
        """Apply a new configuration of the trunk (a KV update)."""
        old, self._config = self._config, config
        if config == old or not self._running:
            return []
        out: list[Action] = []
        binding = self._binding
        if binding is None or _binding_identity(config) != _binding_identity(old):
            if binding is not None:
                self._retire(binding, now, out, report=False)
            self._begin(now, out)
        elif _secrets(config) != _secrets(old):
            binding.update_secrets(config)
            if config.register:
                self._attempt = 0
                self._report(TrunkStatus(TrunkState.REGISTERING, config.registrar), out)
                if binding.pending is not None:
                    self._restart = True
                else:
                    self._register_at = now
        else:
            binding.config = config
            if (config.keepalive_s, config.keepalive_failures) != (old.keepalive_s, old.keepalive_failures):
                # Probe once now under the new rule; _advance sends it only when probing is on.
                self._probe_failures = 0
                if self._probe is None:
                    self._probe_at = now
        self._advance(now, out)
        return out

    def on_response(self, response: Response, now: float) -> list[Action]:
        """A final response to a request we sent; provisional ones and strangers are ignored."""
        if response.status_code < 200:
            return []
        key = _message_key(response)
        if key is None:
            return []
        out: list[Action] = []
        self._resolve(key, _response_outcome(response), now, out)
        self._advance(now, out)
        return out

    def on_timeout(self, request: Request, now: float) -> list[Action]:
        """The transaction of ``request`` timed out: a 408 (RFC 3261 8.1.3.1)."""
        return self._local_outcome(request, _TIMEOUT, now)

    def on_transport_error(
        self, request: Request, now: float, detail: str = "transport error"
    ) -> list[Action]:
        """``request`` could not be sent (connection refused, TLS failure, no route)."""
        return self._local_outcome(request, _Outcome(None, detail), now)

    def on_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        self._advance(now, out)
        return out

    # --- dispatch --------------------------------------------------------------------------------

    def _local_outcome(self, request: Request, outcome: _Outcome, now: float) -> list[Action]:
        key = _message_key(request)
        if key is None:
            return []
        out: list[Action] = []
        self._resolve(key, outcome, now, out)
        self._advance(now, out)
        return out

    def _pendings(self) -> list[_Pending]:
        found = [b.pending for b in self._retiring if b.pending is not None]
        if self._binding is not None and self._binding.pending is not None:
            found.append(self._binding.pending)
        if self._probe is not None:
            found.append(self._probe)
        return found

    def _resolve(self, key: tuple[str, int, str], outcome: _Outcome, now: float, out: list[Action]) -> None:
        probe = self._probe
        if probe is not None and probe.key() == key:
            self._probe = None
            self._probe_result(probe, outcome, now, out)
            return
        binding = self._binding
        if binding is not None and binding.pending is not None and binding.pending.key() == key:
            pending, binding.pending = binding.pending, None
            self._register_result(binding, pending, outcome, now, out)
            return
        for binding in self._retiring:
            if binding.pending is not None and binding.pending.key() == key:
                pending, binding.pending = binding.pending, None
                self._retire_result(binding, pending, outcome, now, out)
                return

    def _advance(self, now: float, out: list[Action]) -> None:
        """Everything due at ``now``: lost requests, the next REGISTER, the next OPTIONS."""
        for pending in self._pendings():
            if now >= pending.sent_at + self._guard_s:
                self._resolve(pending.key(), _TIMEOUT, now, out)
        binding = self._binding
        if (
            self._running
            and binding is not None
            and binding.config.register
            and binding.pending is None
            and self._register_at is not None
            and self._register_at <= now
            and not self._blocked(binding)
        ):
            self._register_at = None
            # Each attempt starts without credentials: a nonce from an earlier attempt is as
            # likely refused as accepted, and a fresh challenge costs one round trip.
            binding.challenges.clear()
            out.append(binding.register(now, Purpose.REGISTER))
        if self._probing() and self._probe is None and self._probe_at is not None and self._probe_at <= now:
            send, self._probe = _options(self._config, now)
            self._probe_at = None
            out.append(send)

    def _blocked(self, binding: _Binding) -> bool:
        # The removal of the same AOR's old binding at the same registrar goes first: carriers that
        # allow one contact per account would refuse the new one while the old one stands.
        target = binding.target()
        return any(old.pending is not None and old.target() == target for old in self._retiring)

    # --- registration ----------------------------------------------------------------------------

    def _begin(self, now: float, out: list[Action]) -> None:
        config = self._config
        self._binding = _Binding(config)
        self._reset_registration()
        self._reset_probe()
        if config.register:
            self._register_at = now
            self._report(TrunkStatus(TrunkState.REGISTERING, config.registrar), out)
        elif config.keepalive_s > 0:
            self._probe_at = now
        else:
            # Nothing to register and nothing to probe: usable as configured.
            self._report(TrunkStatus(TrunkState.REGISTERED, config.registrar), out)

    def _reset_registration(self) -> None:
        self._register_at = None
        self._registered = False
        self._attempt = 0
        self._restart = False

    def _register_result(
        self, binding: _Binding, pending: _Pending, outcome: _Outcome, now: float, out: list[Action]
    ) -> None:
        config = binding.config
        response = outcome.response
        status = outcome.status
        granted = 0
        if outcome.success and response is not None:
            granted = _granted_expires(response, config.contact_uri, pending.expires)
            if granted > 0:
                binding.bound_until = now + granted
        if self._restart:
            # The configuration changed while this was in flight: its answer is about old secrets.
            self._restart = False
            self._register_at = now
            return
        if outcome.success:
            if granted <= 0:
                self._fail(status, "The carrier accepted the REGISTER but did not keep the binding", now, out)
                return
            self._attempt = 0
            self._registered = True
            self._register_at = now + refresh_delay(granted)
            if self._probe_at is None and self._probe is None and config.keepalive_s > 0:
                self._probe_failures = 0
                self._probe_at = now + config.keepalive_s
            self._report(
                TrunkStatus(TrunkState.REGISTERED, config.registrar, sip_status=status, expires_s=granted),
                out,
            )
            return
        if response is not None and status in (401, 407):
            answer = self._answer(binding, pending, response, now)
            if isinstance(answer, SendRequest):
                out.append(answer)
            else:
                self._fail(status, answer, now, out)
            return
        if response is not None and status == 423:
            minimum = _delta_seconds(response, "Min-Expires")
            if minimum is not None and minimum > pending.expires:
                # RFC 3261 10.2.8: retry with at least Min-Expires; refreshes keep it.
                binding.expires = minimum
                self._register_at = now
                return
        retry_after = None if response is None else _delta_seconds(response, "Retry-After")
        self._fail(status, _refusal(outcome), now, out, retry_after=retry_after)

    def _answer(
        self, binding: _Binding, pending: _Pending, response: Response, now: float
    ) -> SendRequest | str:
        """The REGISTER answering a 401/407 (RFC 3261 22.2, 22.3), or why there is none."""
        status = response.status_code
        if status == 401:
            challenge_name, credentials_name = "WWW-Authenticate", "Authorization"
        else:
            challenge_name, credentials_name = "Proxy-Authenticate", "Proxy-Authorization"
        digest = binding.digest
        if digest is None:
            said = f"{status} {_response_outcome(response).phrase}"
            return f"The carrier asks for credentials ({said}) but the trunk has none"
        if pending.auth_rounds >= _MAX_AUTH_ROUNDS:
            return AUTH_FAILED
        values = response.headers.get_all(challenge_name)
        uri = str(pending.request.uri)
        try:
            answer = digest.answer(
                values, pending.method, uri, sent=pending.request.headers.get_all(credentials_name)
            )
        except DigestError as exc:
            return f"The carrier asks for authentication we cannot answer ({exc})"
        key = (credentials_name, answer.challenge.realm)
        if answer.outcome is ChallengeOutcome.REJECTED and key in pending.fresh:
            return AUTH_FAILED
        # REJECTED outside ``fresh``: credentials carried over from earlier in the chain (a proxy's,
        # when the registrar challenged next) met a nonce the proxy will not take twice. Answer anew.
        binding.challenges[key] = answer.challenge
        credentials = [
            (
                name,
                answer.value
                if (name, realm) == key
                else digest.authorization(challenge, pending.method, uri),
            )
            for (name, realm), challenge in binding.challenges.items()
        ]
        purpose = pending.purpose
        return binding.register(
            now, purpose, credentials=credentials, fresh=frozenset({key}), auth_rounds=pending.auth_rounds + 1
        )

    def _fail(
        self, status: int | None, reason: str, now: float, out: list[Action], retry_after: int | None = None
    ) -> None:
        if retry_after is not None:
            # Not sooner than the carrier asked (RFC 3261 21.5.4), nor in a loop on "Retry-After: 0".
            delay = float(max(self._backoff.floor_s, min(retry_after, _MAX_RETRY_AFTER_S)))
        else:
            delay = self._backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        self._register_at = now + delay
        self._registered = False
        self._reset_probe()
        self._report(
            TrunkStatus(
                TrunkState.FAILED, self._config.registrar, sip_status=status, reason=reason, retry_in_s=delay
            ),
            out,
        )

    # --- removing bindings -----------------------------------------------------------------------

    def _retire(self, binding: _Binding, now: float, out: list[Action], *, report: bool) -> bool:
        """Start removing ``binding``; False when there is nothing to remove."""
        binding.report = report
        if binding.pending is None:
            if not binding.config.register or not binding.bound(now):
                return False
            binding.challenges.clear()
            out.append(binding.register(now, Purpose.UNREGISTER))
        # A REGISTER in flight finishes first (10.2: one at a time); its outcome decides.
        self._retiring.append(binding)
        return True

    def _retire_result(
        self, binding: _Binding, pending: _Pending, outcome: _Outcome, now: float, out: list[Action]
    ) -> None:
        response = outcome.response
        if pending.purpose is Purpose.REGISTER:
            if outcome.success and response is not None:
                granted = _granted_expires(response, binding.config.contact_uri, pending.expires)
                binding.bound_until = now + granted
            if binding.bound(now):
                binding.challenges.clear()
                out.append(binding.register(now, Purpose.UNREGISTER))
                return
            self._retired(binding, None, now, out)
            return
        if response is not None and outcome.status in (401, 407):
            answer = self._answer(binding, pending, response, now)
            if isinstance(answer, SendRequest):
                out.append(answer)
                return
            self._retired(binding, answer, now, out, status=outcome.status)
            return
        if outcome.success:
            binding.bound_until = None
            self._retired(binding, None, now, out, status=outcome.status)
            return
        said = f"{outcome.status} {outcome.phrase}" if outcome.status is not None else outcome.phrase
        self._retired(
            binding, f"The carrier did not confirm the removal ({said})", now, out, status=outcome.status
        )

    def _retired(
        self,
        binding: _Binding,
        problem: str | None,
        now: float,
        out: list[Action],
        *,
        status: int | None = None,
    ) -> None:
        self._retiring.remove(binding)
        if not binding.report:
            return
        reason = problem
        if problem is not None and binding.bound(now) and binding.bound_until is not None:
            left = int(binding.bound_until - now + 0.999)
            reason = f"{problem}; the binding lapses by itself within {left} s"
        self._report(
            TrunkStatus(TrunkState.UNREGISTERED, binding.config.registrar, sip_status=status, reason=reason),
            out,
        )

    # --- keep-alive ------------------------------------------------------------------------------

    def _probing(self) -> bool:
        config = self._config
        return self._running and config.keepalive_s > 0 and (not config.register or self._registered)

    def _reset_probe(self) -> None:
        # An OPTIONS in flight is forgotten: its late answer matches nothing and is ignored.
        self._probe = None
        self._probe_at = None
        self._probe_failures = 0

    def _probe_result(self, pending: _Pending, outcome: _Outcome, now: float, out: list[Action]) -> None:
        config = self._config
        if not self._probing():
            # Probing was switched off while this OPTIONS was out.
            return
        self._probe_at = max(pending.sent_at + config.keepalive_s, now)
        # 408 from the carrier or from our transaction layer, or no answer at all: not there.
        if outcome.status is not None and outcome.status != 408:
            self._probe_failures = 0
            if not config.register:
                self._report(TrunkStatus(TrunkState.REGISTERED, config.registrar), out)
            return
        self._probe_failures += 1
        if self._probe_failures < config.keepalive_failures:
            return
        count = config.keepalive_failures
        if not config.register:
            reason = f"The carrier does not answer OPTIONS ({count} in a row)"
            status = TrunkStatus(
                TrunkState.FAILED,
                config.registrar,
                sip_status=outcome.status,
                reason=reason,
                retry_in_s=config.keepalive_s,
            )
            self._report(status, out)
            return
        # Our binding may be gone with the carrier's state or our NAT mapping: register again now.
        reason = f"The carrier stopped answering keep-alive OPTIONS ({count} in a row); registering again"
        self._registered = False
        self._reset_probe()
        binding = self._binding
        if binding is not None and binding.pending is None:
            self._register_at = now
        self._report(
            TrunkStatus(
                TrunkState.FAILED, config.registrar, sip_status=outcome.status, reason=reason, retry_in_s=0.0
            ),
            out,
        )

    # --- status ----------------------------------------------------------------------------------

    def _report(self, status: TrunkStatus, out: list[Action]) -> None:
        """Report ``status`` when it differs from the last one: one event per actual change."""
        if status != self._status:
            self._status = status
            out.append(status)
