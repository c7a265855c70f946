"""HTTP Digest authentication for SIP (RFC 3261 section 22, RFC 7616, RFC 8760), sans-I/O.

Both ends work on header field *values* (what follows ``WWW-Authenticate:``, ``Authorization:`` and
their ``Proxy-`` twins) and plain parameters, never on SIP message objects, and never read a clock:
every method that needs the time takes ``now`` (seconds, from the caller's clock).

Server side: :class:`DigestServer` challenges agents whose credentials are stored only as HA1 per
algorithm (:func:`ha1`). Nonces are stateless and self-validating (issue time + salt + HMAC); the only
state is the highest nonce-count seen per live nonce, bounded in size, for replay protection
(RFC 7616 section 3.4 ``nc``; section 5.5 on replay). :meth:`DigestServer.verify` returns a typed
:data:`DigestResult` so the registrar can choose between 401, 401 with ``stale=true``, 403 and 400.

Client side: :class:`DigestClient` answers a carrier's 401/407 for trunk registration and outbound
calls, from a password or a precomputed HA1, picking the strongest algorithm offered (RFC 8760).

Not supported: ``qop=auth-int`` (no body hashing). A server never offers ``userhash``; the client
honours it when a carrier asks (RFC 7616 section 3.4.4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final, TypeAlias
from urllib.parse import unquote_to_bytes

__all__ = [
    "Algorithm",
    "ChallengeOutcome",
    "DigestAnswer",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestError",
    "DigestFailure",
    "DigestOk",
    "DigestParseError",
    "DigestResult",
    "DigestServer",
    "FailureKind",
    "HA1Lookup",
    "ha1",
    "parse_challenges",
    "parse_credentials",
    "request_digest",
    "userhash",
]


class DigestError(ValueError):
    """Anything this module refuses: a malformed header value, or a challenge it cannot answer."""


class DigestParseError(DigestError):
    """A header value that does not follow the auth-param grammar (RFC 7616 section 3.3/3.4)."""


class Algorithm(StrEnum):
    """The digest algorithms of RFC 7616 section 6.1, as registered for SIP by RFC 8760 section 2.1."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"
    SHA512_256 = "SHA-512-256"
    SHA512_256_SESS = "SHA-512-256-sess"

    @classmethod
    def from_token(cls, token: str) -> Algorithm | None:
        """The algorithm a header names, compared case-insensitively; None when unknown."""
        return _ALGORITHMS_BY_TOKEN.get(token.lower())

    @property
    def session(self) -> bool:
        """The ``-sess`` variants fold nonce and cnonce into HA1 (RFC 7616 section 3.4.2)."""
        return self.value.endswith("-sess")

    @property
    def base(self) -> Algorithm:
        """The algorithm whose HA1 is stored: a ``-sess`` variant derives its HA1 from its base's."""
        return _BASE[self]

    @property
    def strength(self) -> int:
        return _STRENGTH[self.base]

    @property
    def available(self) -> bool:
        """SHA-512/256 comes from OpenSSL; an interpreter built without it cannot use it."""
        return _HASH_NAMES[self.base] in hashlib.algorithms_available


_ALGORITHMS_BY_TOKEN: Final[dict[str, Algorithm]] = {a.value.lower(): a for a in Algorithm}
_BASE: Final[dict[Algorithm, Algorithm]] = {a: Algorithm(a.value.removesuffix("-sess")) for a in Algorithm}
_STRENGTH: Final[dict[Algorithm, int]] = {Algorithm.MD5: 1, Algorithm.SHA256: 2, Algorithm.SHA512_256: 3}
# hashlib's sha512_256 is FIPS 180-4 SHA-512/256 (its own initial values), the SHA-512-256 of
# RFC 7616 and RFC 8760, not SHA-512 cut to 256 bits.
_HASH_NAMES: Final[dict[Algorithm, str]] = {
    Algorithm.MD5: "md5",
    Algorithm.SHA256: "sha256",
    Algorithm.SHA512_256: "sha512_256",
}
_HEX_LENGTH: Final[dict[Algorithm, int]] = {Algorithm.MD5: 32, Algorithm.SHA256: 64, Algorithm.SHA512_256: 64}


def _hash(algorithm: Algorithm, data: str) -> str:
    # RFC 7616 section 3.4.1: the strings are hashed as UTF-8 (charset=UTF-8), which is also SIP's
    # own encoding (RFC 3261 section 25.1). surrogatepass keeps a stray surrogate from raising here;
    # the parser already refuses them in received values.
    raw = data.encode("utf-8", "surrogatepass")
    name = _HASH_NAMES[algorithm.base]
    if name == "md5":
        return hashlib.md5(raw).hexdigest()
    if name == "sha256":
        return hashlib.sha256(raw).hexdigest()
    try:
        return hashlib.new(name, raw).hexdigest()
    except ValueError as exc:
        raise DigestError(f"{algorithm} is not available in this interpreter") from exc


def ha1(username: str, realm: str, password: str, algorithm: Algorithm = Algorithm.MD5) -> str:
    """HA1 = H(username ":" realm ":" password), what a registrar stores instead of the password.

    RFC 7616 section 3.4.2. For a ``-sess`` algorithm this is the stored (base) HA1; the session
    HA1 is derived per request in :func:`request_digest`.
    """
    return _hash(algorithm, f"{username}:{realm}:{password}")


def userhash(username: str, realm: str, algorithm: Algorithm) -> str:
    """H(username ":" realm), sent instead of the username when ``userhash=true`` (RFC 7616 3.4.4)."""
    return _hash(algorithm, f"{username}:{realm}")


def request_digest(
    *,
    ha1: str,
    algorithm: Algorithm,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 7616 section 3.4.1), from the stored HA1.

    With ``qop=auth`` it is KD(HA1, nonce:nc:cnonce:qop:HA2); without qop it is the RFC 2069 form
    KD(HA1, nonce:HA2) (RFC 2617 section 3.2.2.1). HA2 = H(method:uri), where SIP's method is the
    request's own (RFC 3261 section 22.4).
    """
    if algorithm.session:
        if cnonce is None:
            raise DigestError(f"{algorithm} needs a cnonce")
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise DigestError("qop needs nc and cnonce")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- Header value grammar ------------------------------------------------------------------------
# RFC 7235 section 2.1 / RFC 7616 section 3.3-3.4: challenge and credentials are
#   auth-scheme [ 1*SP ( token68 / #auth-param ) ]
#   auth-param = token BWS "=" BWS ( token / quoted-string )
# Every parameter may come as token or quoted-string and a name may occur only once (RFC 7235
# section 2.1; RFC 3261 section 7.3.1); names are case-insensitive. Whitespace includes CRLF so a
# value whose line folding nobody undid still parses (RFC 3261 section 7.3.1).

_MAX_VALUE_LENGTH: Final = 8192
_WS: Final = r"[ \t\r\n]*"
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# qdtext and quoted-pair (RFC 7230 section 3.2.6) with non-ASCII allowed (obs-text; UTF8-NONASCII
# in RFC 3261 section 25.1) but not C0 controls, DEL or lone surrogates. Written as an unrolled loop
# so a missing closing quote costs linear time, not a backtracking explosion.
_QDTEXT: Final = r'[^"\\\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]'
_QPAIR: Final = r"\\[^\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]"
_QUOTED: Final = rf'"({_QDTEXT}*(?:{_QPAIR}{_QDTEXT}*)*)"'
_PARAM_RE: Final = re.compile(rf"{_WS}({_TOKEN}){_WS}={_WS}(?:({_TOKEN})|{_QUOTED}){_WS}")
_SCHEME_RE: Final = re.compile(rf"{_WS}({_TOKEN})(?:[ \t\r\n]+|(?=,)|\Z)")
_TOKEN68_RE: Final = re.compile(rf"([A-Za-z0-9\-._~+/]+=*){_WS}(?=,|\Z)")
_UNESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_SEPARATORS_RE: Final = re.compile(r"[ \t\r\n,]*")
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]+")
_NC_RE: Final = re.compile(r"[0-9A-Fa-f]{8}")
# RFC 8187 section 3.2.1 ext-value, UTF-8 only, for username* (RFC 7616 section 3.4.4).
_EXT_VALUE_RE: Final = re.compile(
    r"(?i:utf-8)'[A-Za-z0-9\-]*'((?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+\-.^_`|~])*)"
)


@dataclass(frozen=True, slots=True)
class _AuthItem:
    scheme: str
    params: dict[str, str]


def _skip_separators(value: str, pos: int) -> tuple[int, bool]:
    """Skip whitespace and empty list elements (RFC 7230 section 7); say whether a comma was crossed."""
    match = _SEPARATORS_RE.match(value, pos)
    end = match.end() if match is not None else pos
    return end, "," in value[pos:end]


def _parse_auth_items(value: str) -> list[_AuthItem]:
    """Split a header value into (scheme, params) items: one for credentials, one or more for
    challenges (RFC 7235 section 4.1 allows several challenges, comma-separated, in one value)."""
    if len(value) > _MAX_VALUE_LENGTH:
        raise DigestParseError(f"header value longer than {_MAX_VALUE_LENGTH} characters")
    items: list[_AuthItem] = []
    pos, _ = _skip_separators(value, 0)
    while pos < len(value):
        scheme_match = _SCHEME_RE.match(value, pos)
        if scheme_match is None:
            raise DigestParseError(f"expected an auth-scheme at offset {pos}")
        item = _AuthItem(scheme_match.group(1), {})
        items.append(item)
        pos = scheme_match.end()
        token68 = None if item.scheme.lower() == "digest" else _TOKEN68_RE.match(value, pos)
        if token68 is not None:
            # A token68 scheme (e.g. Bearer) has no params; its challenge ends here.
            pos, _ = _skip_separators(value, token68.end())
        else:
            pos = _parse_params(value, pos, item.params)
    return items


def _parse_params(value: str, pos: int, params: dict[str, str]) -> int:
    """Read auth-params into ``params`` until the end or the start of the next challenge."""
    while True:
        pos, crossed_comma = _skip_separators(value, pos)
        if pos >= len(value):
            return pos
        param = _PARAM_RE.match(value, pos)
        if param is None:
            # After a comma, a token not followed by "=" starts the next challenge (RFC 7235 4.1).
            if crossed_comma and _SCHEME_RE.match(value, pos) is not None:
                return pos
            raise DigestParseError(f"expected an auth-param at offset {pos}")
        name = param.group(1).lower()
        if name in params:
            raise DigestParseError(f"parameter {name!r} appears more than once")
        token, quoted = param.group(2), param.group(3)
        if token is not None:
            params[name] = token
        else:
            params[name] = _UNESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = param.end()
        if pos < len(value) and value[pos] != ",":
            raise DigestParseError(f"expected ',' after parameter {name!r} at offset {pos}")


def _decode_ext_value(ext_value: str) -> str:
    match = _EXT_VALUE_RE.fullmatch(ext_value)
    if match is None:
        raise DigestParseError("username* is not a UTF-8 ext-value (RFC 8187 section 3.2.1)")
    try:
        return unquote_to_bytes(match.group(1)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DigestParseError("username* is not valid UTF-8") from exc


def _flag(params: Mapping[str, str], name: str) -> bool:
    # RFC 7616 section 3.3: "true" in any case is true; "false", anything else or absence is false.
    return params.get(name, "").lower() == "true"


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """The parameters of an ``Authorization`` / ``Proxy-Authorization`` value (RFC 7616 3.4).

    ``username`` is the decoded name (``username*`` already decoded), or the hash when ``userhash``.
    ``algorithm`` is the raw token (``MD5`` when absent, RFC 7616 section 3.4); unknown tokens are
    kept so the server can say why it refuses them.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None
    opaque: str | None
    userhash: bool
    params: Mapping[str, str]


_REQUIRED_CREDENTIALS: Final = ("realm", "nonce", "uri", "response")


def parse_credentials(value: str) -> DigestCredentials:
    """Parse one Digest credentials value; :class:`DigestParseError` on anything malformed."""
    items = _parse_auth_items(value)
    if len(items) != 1:
        raise DigestParseError("expected exactly one set of credentials")
    item = items[0]
    if item.scheme.lower() != "digest":
        raise DigestParseError(f"scheme {item.scheme!r} is not Digest")
    params = item.params
    missing = [name for name in _REQUIRED_CREDENTIALS if name not in params]
    if missing:
        raise DigestParseError(f"missing {', '.join(missing)}")
    hashed = _flag(params, "userhash")
    if "username*" in params:
        # RFC 7616 section 3.4.4: username* replaces username, and cannot carry a hash.
        if "username" in params or hashed:
            raise DigestParseError("username* together with username or userhash")
        username = _decode_ext_value(params["username*"])
    elif "username" in params:
        username = params["username"]
    else:
        raise DigestParseError("missing username")
    return DigestCredentials(
        username=username,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=params.get("algorithm", Algorithm.MD5.value),
        qop=params.get("qop"),
        nc=params.get("nc"),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        userhash=hashed,
        params=MappingProxyType(params),
    )


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One Digest challenge from a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value (RFC 7616 3.3).

    ``qop`` holds the offered options, lower-cased; empty means the RFC 2069 form without qop.
    """

    realm: str
    nonce: str
    algorithm: Algorithm
    qop: tuple[str, ...]
    opaque: str | None
    stale: bool
    userhash: bool
    params: Mapping[str, str]


def parse_challenges(*values: str) -> list[DigestChallenge]:
    """All Digest challenges with a known algorithm, in header order.

    Other schemes and unknown algorithms (e.g. AKAv1-MD5) are skipped: the client simply cannot
    use them (RFC 7616 section 3.3 lets a server offer several). A Digest challenge without realm or
    nonce, or broken syntax, raises :class:`DigestParseError`.
    """
    challenges: list[DigestChallenge] = []
    for value in values:
        for item in _parse_auth_items(value):
            if item.scheme.lower() != "digest":
                continue
            params = item.params
            if "realm" not in params or "nonce" not in params:
                raise DigestParseError("Digest challenge without realm or nonce")
            algorithm = Algorithm.from_token(params.get("algorithm", Algorithm.MD5.value))
            if algorithm is None:
                continue
            qop = tuple(
                option.strip().lower() for option in params.get("qop", "").split(",") if option.strip()
            )
            challenges.append(
                DigestChallenge(
                    realm=params["realm"],
                    nonce=params["nonce"],
                    algorithm=algorithm,
                    qop=qop,
                    opaque=params.get("opaque"),
                    stale=_flag(params, "stale"),
                    userhash=_flag(params, "userhash"),
                    params=MappingProxyType(params),
                )
            )
    return challenges


_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def _quote(text: str) -> str:
    # A CR or LF here would let a realm or URI inject header lines; refuse rather than escape.
    if _CONTROL_RE.search(text):
        raise DigestError(f"control character in {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- Server --------------------------------------------------------------------------------------


class FailureKind(StrEnum):
    """Why credentials were refused, and how we mean the registrar or proxy to answer.

    Challenge again with a fresh nonce (401/407, RFC 3261 sections 22.2-22.3): ``MISMATCH``,
    ``INVALID_NONCE``, ``REPLAY``; with ``stale=true``: ``STALE_NONCE``, which is not the agent's
    fault and not counted. ``BAD_CREDENTIALS`` and ``UNKNOWN_USER`` are wrong secrets: count them
    per source, answer both alike so usernames cannot be probed, and turn to 403 after repeated
    failures. ``MALFORMED`` is a 400 (RFC 2617 section 3.2.2).
    """

    MALFORMED = "malformed"
    MISMATCH = "mismatch"
    INVALID_NONCE = "invalid_nonce"
    STALE_NONCE = "stale_nonce"
    REPLAY = "replay"
    UNKNOWN_USER = "unknown_user"
    BAD_CREDENTIALS = "bad_credentials"


@dataclass(frozen=True, slots=True)
class DigestOk:
    """Verified credentials. ``nc`` is None for the RFC 2069 form (no qop)."""

    username: str
    realm: str
    algorithm: Algorithm
    uri: str
    nc: int | None


@dataclass(frozen=True, slots=True)
class DigestFailure:
    """Refused credentials; ``username`` is the claimed one when the value got that far."""

    kind: FailureKind
    reason: str
    username: str | None = None

    @property
    def stale(self) -> bool:
        return self.kind is FailureKind.STALE_NONCE


DigestResult: TypeAlias = DigestOk | DigestFailure
#: ``lookup_ha1(username, algorithm)``: the stored HA1 for that user under the server's realm and
#: that (base) algorithm, or None when there is none.
HA1Lookup: TypeAlias = Callable[[str, Algorithm], str | None]

_NONCE_STRUCT: Final = struct.Struct(">q8s")
_NONCE_TAG_BYTES: Final = 16
_NONCE_BYTES: Final = _NONCE_STRUCT.size + _NONCE_TAG_BYTES
_NONCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded base64url of the 32 bytes
#: How far in the future an issue time may be before the nonce is refused as stale: covers clock
#: differences between gateway instances sharing one secret.
_FUTURE_TOLERANCE_MS: Final = 5_000


class _Count(Enum):
    OK = "ok"
    REPLAY = "replay"
    FORGOTTEN = "forgotten"


class _NonceCounts:
    """Highest nonce-count seen per live nonce (RFC 7616 section 3.4: nc must increase), LRU-bounded.

    Forgetting a live nonce would reopen it to replays, so the issue time of the newest live nonce
    ever evicted becomes a floor: a nonce issued no later than it and with no entry is "forgotten"
    and the agent is told it is stale, which costs a round trip, not a password prompt. Only a
    correct digest creates an entry, so only an authenticated agent can push others out.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._highest: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._floor_ms: int | None = None

    def __len__(self) -> int:
        return len(self._highest)

    def advance(self, nonce: str, issued_ms: int, nc: int, live_after_ms: int) -> _Count:
        entry = self._highest.get(nonce)
        if entry is None:
            if self._floor_ms is not None and issued_ms <= self._floor_ms:
                return _Count.FORGOTTEN
        elif nc <= entry[1]:
            return _Count.REPLAY
        self._highest[nonce] = (issued_ms, nc)
        self._highest.move_to_end(nonce)
        while len(self._highest) > self._capacity:
            _, (evicted_ms, _) = self._highest.popitem(last=False)
            if evicted_ms >= live_after_ms and (self._floor_ms is None or evicted_ms > self._floor_ms):
                self._floor_ms = evicted_ms
        return _Count.OK

    def forget_expired(self, live_after_ms: int) -> None:
        for nonce in [n for n, (issued_ms, _) in self._highest.items() if issued_ms < live_after_ms]:
            del self._highest[nonce]


def _ms(now: float) -> int:
    return round(now * 1000)


class DigestServer:
    """Challenges agents and verifies their credentials for one realm (RFC 3261 section 22.2-22.3).

    ``secret`` keys the nonce HMAC: share it between instances that should accept each other's
    nonces; changing it makes outstanding nonces invalid (agents are simply challenged again).
    ``algorithms`` are offered in the given order, one challenge each, most preferred first
    (RFC 8760 section 2.3). ``proxy`` selects 407/Proxy-Authenticate over 401/WWW-Authenticate
    (RFC 3261 section 22.3). ``allow_rfc2069`` accepts credentials without qop from agents that
    predate RFC 2617; they get no nonce-count replay protection, only the nonce lifetime.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_lifetime: float = 300.0,
        algorithms: Sequence[Algorithm] = (Algorithm.SHA256, Algorithm.MD5),
        allow_rfc2069: bool = False,
        proxy: bool = False,
        max_tracked_nonces: int = 65_536,
        entropy: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if len(secret) < 16:
            raise DigestError("the nonce secret must be at least 16 bytes")
        if not realm or _CONTROL_RE.search(realm):
            raise DigestError("realm must be non-empty text without control characters")
        if not algorithms or len(set(algorithms)) != len(algorithms):
            raise DigestError("offer at least one algorithm, each once")
        unavailable = [a for a in algorithms if not a.available]
        if unavailable:
            raise DigestError(f"not available in this interpreter: {', '.join(unavailable)}")
        if nonce_lifetime <= 0 or max_tracked_nonces < 1:
            raise DigestError("nonce_lifetime and max_tracked_nonces must be positive")
        self.realm = realm
        self.algorithms: tuple[Algorithm, ...] = tuple(algorithms)
        self.nonce_lifetime = nonce_lifetime
        self.allow_rfc2069 = allow_rfc2069
        self.proxy = proxy
        self._secret = secret
        self._realm_bytes = realm.encode("utf-8")
        self._lifetime_ms = _ms(nonce_lifetime)
        self._entropy = entropy
        self._counts = _NonceCounts(max_tracked_nonces)
        # Constant per realm and secret: RFC 7616 section 3.3 only asks that it come back unchanged.
        opaque_mac = hmac.digest(secret, b"opaque\x00" + self._realm_bytes, "sha256")
        self.opaque = base64.urlsafe_b64encode(opaque_mac[:16]).rstrip(b"=").decode("ascii")

    @property
    def status_code(self) -> int:
        """401 from a registrar or UAS, 407 from a proxy (RFC 3261 sections 22.2 and 22.3)."""
        return 407 if self.proxy else 401

    @property
    def challenge_header(self) -> str:
        return "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"

    @property
    def credentials_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"

    @property
    def tracked_nonces(self) -> int:
        return len(self._counts)

    def challenges(self, now: float, *, stale: bool = False, source: str = "") -> list[str]:
        """Challenge header values, one per algorithm, sharing one fresh nonce.

        ``stale`` after a :attr:`FailureKind.STALE_NONCE` result tells the agent to retry without
        asking its user again (RFC 7616 section 3.3). ``source`` (e.g. the agent's address) binds the
        nonce to it; pass the same value to :meth:`verify`.
        """
        nonce = self._issue_nonce(_ms(now), source)
        tail = ', qop="auth", stale=true' if stale else ', qop="auth"'
        head = f'Digest realm={_quote(self.realm)}, nonce="{nonce}", opaque="{self.opaque}", algorithm='
        return [f"{head}{algorithm.value}{tail}" for algorithm in self.algorithms]

    def verify(
        self,
        authorization: str,
        method: str,
        now: float,
        lookup_ha1: HA1Lookup,
        *,
        source: str = "",
    ) -> DigestResult:
        """Check one Authorization / Proxy-Authorization value for a request with ``method``.

        ``source`` must be what :meth:`challenges` was given. Never raises for anything in
        ``authorization``; exceptions from ``lookup_ha1`` propagate.
        The caller compares ``DigestOk.uri`` with the Request-URI if it wants that binding
        (RFC 7616 section 3.4.6; SIP URI equality is RFC 3261 section 19.1.4's business).
        """
        try:
            credentials = parse_credentials(authorization)
        except DigestParseError as exc:
            return DigestFailure(FailureKind.MALFORMED, str(exc))
        username = credentials.username

        def failure(kind: FailureKind, reason: str) -> DigestFailure:
            return DigestFailure(kind, reason, username)

        if credentials.realm != self.realm:
            return failure(FailureKind.MISMATCH, "realm is not this server's")
        algorithm = Algorithm.from_token(credentials.algorithm)
        if algorithm is None or algorithm not in self.algorithms:
            return failure(FailureKind.MISMATCH, f"algorithm {credentials.algorithm!r} was not offered")
        if credentials.opaque != self.opaque:
            return failure(FailureKind.MISMATCH, "opaque missing or not the one sent")
        if credentials.userhash:
            return failure(FailureKind.MISMATCH, "userhash was not offered")
        if not credentials.uri:
            return failure(FailureKind.MALFORMED, "empty uri")
        if not _HEX_RE.fullmatch(credentials.response):
            return failure(FailureKind.MALFORMED, "response is not hexadecimal")

        qop = credentials.qop.lower() if credentials.qop is not None else None
        nc: int | None = None
        if qop is not None:
            if qop != "auth":
                return failure(FailureKind.MISMATCH, f"qop {credentials.qop!r} was not offered")
            if credentials.nc is None or not _NC_RE.fullmatch(credentials.nc):
                return failure(FailureKind.MALFORMED, "qop=auth needs nc as 8 hex digits")
            if not credentials.cnonce:
                return failure(FailureKind.MALFORMED, "qop=auth needs a cnonce")
            nc = int(credentials.nc, 16)
        else:
            # RFC 2617 section 3.2.2: without qop, cnonce and nc must not be sent.
            if not self.allow_rfc2069:
                return failure(FailureKind.MISMATCH, "qop=auth is required")
            if credentials.nc is not None or credentials.cnonce is not None:
                return failure(FailureKind.MALFORMED, "nc or cnonce without qop")
            if algorithm.session:
                return failure(FailureKind.MALFORMED, f"{algorithm} needs qop")

        issued_ms = self._nonce_issued_ms(credentials.nonce, source)
        if issued_ms is None:
            return failure(FailureKind.INVALID_NONCE, "nonce was not issued by this server")

        stored = lookup_ha1(username, algorithm.base)
        # An unknown user still costs one digest, so timing does not tell which usernames exist.
        secret_ha1 = stored if stored is not None else "0" * _HEX_LENGTH[algorithm.base]
        expected = request_digest(
            ha1=secret_ha1,
            algorithm=algorithm,
            nonce=credentials.nonce,
            method=method,
            uri=credentials.uri,
            qop=qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
        )
        matches = hmac.compare_digest(expected.encode("ascii"), credentials.response.lower().encode("ascii"))
        if stored is None:
            return failure(FailureKind.UNKNOWN_USER, "no credentials for this user and algorithm")
        if not matches:
            return failure(FailureKind.BAD_CREDENTIALS, "response does not match")

        # Only a correct digest may be told "stale" (RFC 7616 section 3.3) and only it may move the
        # nonce-count, or anyone could burn a live nonce with nc=ffffffff.
        now_ms = _ms(now)
        age_ms = now_ms - issued_ms
        if age_ms > self._lifetime_ms or age_ms < -_FUTURE_TOLERANCE_MS:
            return failure(FailureKind.STALE_NONCE, "nonce expired")
        if nc is not None:
            outcome = self._counts.advance(credentials.nonce, issued_ms, nc, now_ms - self._lifetime_ms)
            if outcome is _Count.REPLAY:
                return failure(FailureKind.REPLAY, "nonce-count did not increase")
            if outcome is _Count.FORGOTTEN:
                return failure(FailureKind.STALE_NONCE, "nonce-count state was evicted")
        return DigestOk(username=username, realm=self.realm, algorithm=algorithm, uri=credentials.uri, nc=nc)

    def forget_expired(self, now: float) -> None:
        """Drop nonce-count state of expired nonces; call now and then to keep memory low."""
        self._counts.forget_expired(_ms(now) - self._lifetime_ms)

    def _nonce_mac(self, body: bytes, source: str) -> bytes:
        message = b"".join((body, self._realm_bytes, b"\x00", source.encode("utf-8", "surrogatepass")))
        return hmac.digest(self._secret, message, "sha256")[:_NONCE_TAG_BYTES]

    def _issue_nonce(self, issued_ms: int, source: str) -> str:
        # A random salt keeps nonces issued in the same millisecond apart: nonce-counts are kept
        # per nonce, so two agents sharing one would see each other's nc as replays.
        body = _NONCE_STRUCT.pack(issued_ms, self._entropy(8))
        raw = body + self._nonce_mac(body, source)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def _nonce_issued_ms(self, nonce: str, source: str) -> int | None:
        if not _NONCE_RE.fullmatch(nonce):
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        body, tag = raw[: _NONCE_STRUCT.size], raw[_NONCE_STRUCT.size :]
        if not hmac.compare_digest(tag, self._nonce_mac(body, source)):
            return None
        issued_ms: int = _NONCE_STRUCT.unpack(body)[0]
        return issued_ms


# --- Client --------------------------------------------------------------------------------------


class ChallengeOutcome(StrEnum):
    """What a 401/407 means for the request that received it (RFC 3261 section 22.2-22.3).

    ``FIRST``: the request carried no credentials for that realm; answer. ``STALE``: ours were right
    but the nonce expired; answer again, not a failure (RFC 7616 section 3.3). ``REJECTED``: ours
    were refused; count a failure and do not retry blindly with the same secret.
    """

    FIRST = "first"
    STALE = "stale"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class DigestAnswer:
    outcome: ChallengeOutcome
    challenge: DigestChallenge
    #: The Authorization (for 401) or Proxy-Authorization (for 407) header value.
    value: str


def _random_cnonce() -> str:
    return secrets.token_urlsafe(18)


class DigestClient:
    """Our credentials towards one carrier: answers its challenges (RFC 3261 section 22.2-22.3).

    Give either ``password`` or ``ha1`` (a mapping from base algorithm to the HA1 computed for the
    carrier's realm). ``realm``, when set, is the only realm answered: a password-derived digest
    sent to any realm that asks can be attacked offline. ``cnonce`` is injectable for tests.
    """

    def __init__(
        self,
        username: str,
        *,
        password: str | None = None,
        ha1: Mapping[Algorithm, str] | None = None,
        realm: str | None = None,
        cnonce: Callable[[], str] = _random_cnonce,
        max_nonces: int = 64,
    ) -> None:
        if (password is None) == (ha1 is None):
            raise DigestError("give exactly one of password and ha1")
        for text in (username, password or ""):
            if _CONTROL_RE.search(text):
                raise DigestError("control character in username or password")
        self.username = username
        self.realm = realm
        self._password = password
        self._ha1 = {algorithm.base: value.lower() for algorithm, value in (ha1 or {}).items()}
        self._cnonce = cnonce
        self._max_nonces = max_nonces
        self._nonce_counts: OrderedDict[str, int] = OrderedDict()

    def supports(self, challenge: DigestChallenge) -> bool:
        """Whether we can answer: known realm, usable algorithm and secret, qop auth or none."""
        if self.realm is not None and challenge.realm != self.realm:
            return False
        if not challenge.algorithm.available:
            return False
        if self._password is None and challenge.algorithm.base not in self._ha1:
            return False
        if not challenge.qop:
            return not challenge.algorithm.session
        return "auth" in challenge.qop

    def choose(self, challenges: Iterable[DigestChallenge]) -> DigestChallenge:
        """The strongest challenge we can answer; among equals, the topmost.

        RFC 8760 section 2.4 says to use the topmost supported one "unless a local policy dictates
        otherwise". Ours is strength first: challenges are not integrity-protected, so an on-path
        attacker could reorder them to put MD5 on top (the downgrade of RFC 8760 section 3).
        """
        best: DigestChallenge | None = None
        for challenge in challenges:
            if self.supports(challenge) and (
                best is None or challenge.algorithm.strength > best.algorithm.strength
            ):
                best = challenge
        if best is None:
            raise DigestError("no challenge with a realm, algorithm and qop we can answer")
        return best

    def authorization(self, challenge: DigestChallenge, method: str, uri: str) -> str:
        """The credentials value answering ``challenge`` for a request ``method`` to ``uri``.

        Each call uses the next nonce-count for the challenge's nonce, so cached credentials can be
        reused on later requests (RFC 3261 section 22.3, RFC 7616 section 3.4).
        """
        if not self.supports(challenge):
            raise DigestError("cannot answer this challenge")
        algorithm = challenge.algorithm
        realm = challenge.realm
        if self._password is not None:
            secret_ha1 = ha1(self.username, realm, self._password, algorithm)
        else:
            secret_ha1 = self._ha1[algorithm.base]
        name = userhash(self.username, realm, algorithm) if challenge.userhash else self.username
        # SIP carries UTF-8 in quoted strings (RFC 3261 section 25.1), so a non-ASCII username goes
        # as is rather than as RFC 7616's username*, which SIP servers do not read.
        parts = [
            f"Digest username={_quote(name)}",
            f"realm={_quote(realm)}",
            f"nonce={_quote(challenge.nonce)}",
            f"uri={_quote(uri)}",
        ]
        qop: str | None = None
        nc: str | None = None
        cnonce: str | None = None
        if challenge.qop:
            qop = "auth"
            nc = f"{self._next_nonce_count(challenge.nonce):08x}"
            cnonce = self._cnonce()
        elif algorithm.session:
            raise DigestError(f"{algorithm} needs qop")
        response = request_digest(
            ha1=secret_ha1,
            algorithm=algorithm,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
        )
        parts.append(f'response="{response}"')
        parts.append(f"algorithm={algorithm.value}")
        if qop is not None and cnonce is not None and nc is not None:
            # RFC 7616 section 3.4: qop and nc are sent as tokens, cnonce quoted.
            parts.extend((f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc}"))
        if challenge.opaque is not None:
            parts.append(f"opaque={_quote(challenge.opaque)}")
        if challenge.userhash:
            parts.append("userhash=true")
        return ", ".join(parts)

    def answer(
        self,
        challenge_values: Sequence[str],
        method: str,
        uri: str,
        *,
        sent: Sequence[str] = (),
    ) -> DigestAnswer:
        """Answer a 401/407 from its WWW-Authenticate / Proxy-Authenticate values.

        ``sent`` are the credentials values the challenged request carried (empty for the first
        attempt); they tell a stale nonce from refused credentials. Raises :class:`DigestError`
        when nothing can be answered.
        """
        chosen = self.choose(parse_challenges(*challenge_values))
        answered_realms = {parse_credentials(value).realm for value in sent}
        if chosen.realm not in answered_realms:
            outcome = ChallengeOutcome.FIRST
        elif chosen.stale:
            outcome = ChallengeOutcome.STALE
        else:
            outcome = ChallengeOutcome.REJECTED
        return DigestAnswer(outcome, chosen, self.authorization(chosen, method, uri))

    def _next_nonce_count(self, nonce: str) -> int:
        count = self._nonce_counts.pop(nonce, 0) + 1
        if count > 0xFFFFFFFF:
            raise DigestError("nonce-count exhausted; a new challenge is needed")
        self._nonce_counts[nonce] = count
        while len(self._nonce_counts) > self._max_nonces:
            self._nonce_counts.popitem(last=False)
        return count
