"""Protection against SIP scanners, floods and password guessing, per source address. Sans-I/O.

RFC 3261 section 26 leaves denial of service and brute force to the deployment; this is what
Kamailio's ``pike`` and ``htable`` ban tables and fail2ban's SIP jails do, in one object that never
reads a clock: every method takes ``now`` (seconds, from the caller's monotonic clock).

:class:`SourceGuard` answers one question per incoming request, before it is parsed further:
:meth:`SourceGuard.check` gives a :class:`Verdict`. It keeps, per source address,

* a token bucket capping the request rate (``rate_per_s``, ``burst``), like pike's request density;
* the times of its last authentication failures, banning it after ``failures_to_ban`` of them within
  ``failure_window_s`` (fail2ban's ``maxretry`` and ``findtime``);
* its bans, which grow for repeat offenders (fail2ban's ``bantime.increment``).

A request whose User-Agent names a known scanner is dropped and its source banned at once.
Networks in ``trusted`` (the carriers, our own proxies) are never limited, counted or banned.

Verdicts other than ALLOW are never answered on UDP: a reply tells a scanner that a SIP server
lives here and reflects traffic at a spoofed address. A RATE_LIMITED request arriving on a
connection (TCP, TLS, WebSocket) may be answered ``503`` with ``Retry-After`` from
:meth:`SourceGuard.wait_s` (RFC 3261 21.5.4, 20.33).

Behind a load balancer the source address must be the client's (PROXY protocol,
``X-Forwarded-For`` of a trusted proxy), or the balancer's network put in ``trusted``: otherwise
every client shares one bucket and one ban.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeAlias

__all__ = [
    "DEFAULT_SCANNER_AGENTS",
    "GuardCounters",
    "GuardPolicy",
    "SourceGuard",
    "Verdict",
    "is_scanner_agent",
    "scanner_matcher",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


class Verdict(StrEnum):
    """What to do with one incoming request."""

    #: Go on processing.
    ALLOW = "allow"
    #: Over the source's rate: drop (UDP) or answer 503 with Retry-After (connections).
    RATE_LIMITED = "rate-limited"
    #: A scanner's User-Agent: drop without an answer; the source is now banned.
    DROP_SILENTLY = "drop-silently"
    #: The source is banned: drop without an answer.
    BANNED = "banned"


#: User-Agent words of SIP attack tools, matched case-insensitively as whole words. Taken from
#: what Kamailio's default configuration drops (friendly-scanner, sipcli, sipvicious,
#: VaxSIPUserAgent, pplsip) and from fail2ban and iptables block lists, keeping only names that
#: belong to scanners, war dialers and crackers. Deliberately absent: sipp and sipsak (load and
#: monitoring tools people point at their own servers), "Asterisk PBX" (real PBXs, which scanners
#: imitate too), and softphones such as X-Lite, eyeBeam, CSipSimple or Cisco-SIPGateway that some
#: lists block wholesale.
DEFAULT_SCANNER_AGENTS: Final[tuple[str, ...]] = (
    "friendly-scanner",  # SIPVicious svmap/svwar/svcrack default
    "friendly-request",  # a later SIPVicious default
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "sundayddr",
    "sundayaddr",
    "iwar",  # war dialer
    "vaxsipuseragent",  # VaxVoIP SDK, the usual toll-fraud client
    "vaxipuseragent",
    "pplsip",
    "sipptk",  # SIPPTS default
    "siparmyknife",
    "sivus",
    "smap",
)

# A token is a "word" of the User-Agent when no letter or digit touches it: "smap" is caught in
# "smap 0.6" but not in "Bismap". Hyphens inside a token are part of it.
_WORD_EDGE_BEFORE: Final = r"(?<![a-z0-9])"
_WORD_EDGE_AFTER: Final = r"(?![a-z0-9])"


def scanner_matcher(agents: Iterable[str]) -> re.Pattern[str]:
    """One compiled pattern finding any of ``agents`` as a whole word in a lower-cased User-Agent."""
    words = sorted({agent.lower() for agent in agents if agent}, key=len, reverse=True)
    if not words:
        # Matches nothing: a lookahead that can never succeed.
        return re.compile(r"(?!)")
    alternatives = "|".join(re.escape(word) for word in words)
    return re.compile(f"{_WORD_EDGE_BEFORE}(?:{alternatives}){_WORD_EDGE_AFTER}")


_DEFAULT_MATCHER: Final = scanner_matcher(DEFAULT_SCANNER_AGENTS)


def is_scanner_agent(user_agent: str | None) -> bool:
    """Whether ``user_agent`` names a known scanner of :data:`DEFAULT_SCANNER_AGENTS`.

    No User-Agent is not a scanner: it is optional (RFC 3261 20.41) and many phones send none.
    """
    if not user_agent:
        return False
    return _DEFAULT_MATCHER.search(user_agent.lower()) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardPolicy:
    """Limits of a :class:`SourceGuard`. Times in seconds.

    The rate defaults leave room for a NAT shared by an office of softphones (a REGISTER each,
    their challenges, calls and keep-alives) while cutting a scanner's thousands of requests per
    second; pike setups commonly allow 16 to 30 requests per 2 s.
    """

    #: Sustained requests per second per source, and the burst above it.
    rate_per_s: float = 10.0
    burst: float = 40.0
    #: Refused credentials within ``failure_window_s`` that ban the source.
    failures_to_ban: int = 5
    failure_window_s: float = 600.0
    #: First ban; each repeat offence within ``offence_memory_s`` multiplies it by ``ban_growth``,
    #: up to ``max_ban_s``.
    ban_s: float = 900.0
    ban_growth: float = 2.0
    max_ban_s: float = 86400.0
    offence_memory_s: float = 86400.0
    #: Rate-limited requests within a fixed ``flood_window_s`` (pike's sampling unit) that turn the
    #: limit into a ban; None never bans for rate alone.
    flood_requests_to_ban: int | None = 200
    flood_window_s: float = 10.0
    #: Sources tracked at most; the least recently seen is forgotten first, with its ban: an
    #: attacker still sending is recent, so what goes is a quiet one.
    max_sources: int = 100_000
    #: IPv6 sources are tracked per prefix of this length: one host owns a whole /64 and can
    #: rotate through it. 128 tracks single addresses.
    ipv6_prefix: int = 64
    #: A successful authentication forgets the source's failures: one phone with a stale password
    #: behind an office NAT does not get the colleagues' address banned.
    reset_failures_on_success: bool = True
    scanner_agents: tuple[str, ...] = DEFAULT_SCANNER_AGENTS
    #: CIDRs never limited or banned: the carriers' signalling addresses, our own proxies.
    trusted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        if self.failures_to_ban < 1 or self.failure_window_s <= 0:
            raise ValueError("failures_to_ban must be at least 1 and failure_window_s positive")
        if self.ban_s <= 0 or self.ban_growth < 1 or self.max_ban_s < self.ban_s:
            raise ValueError("need 0 < ban_s <= max_ban_s and ban_growth >= 1")
        if self.flood_requests_to_ban is not None and self.flood_requests_to_ban < 1:
            raise ValueError("flood_requests_to_ban must be at least 1, or None")
        if self.flood_window_s <= 0 or self.offence_memory_s < 0:
            raise ValueError("flood_window_s must be positive and offence_memory_s not negative")
        if self.max_sources < 1:
            raise ValueError("max_sources must be at least 1")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be within 0..128")


@dataclass(slots=True)
class GuardCounters:
    """Totals since start, for metrics (each a Prometheus counter)."""

    allowed: int = 0
    rate_limited: int = 0
    scanners_dropped: int = 0
    refused_while_banned: int = 0
    bans: int = 0
    auth_failures: int = 0
    evicted: int = 0


@dataclass(slots=True)
class _Source:
    """What we remember about one source address (or IPv6 prefix)."""

    tokens: float
    stamp: float
    failures: deque[float]
    banned_until: float = float("-inf")
    offences: int = 0
    offence_at: float = float("-inf")
    flood_count: int = 0
    flood_start: float = float("-inf")


@dataclass(slots=True)
class _Trusted:
    v4: list[ipaddress.IPv4Network] = field(default_factory=list)
    v6: list[ipaddress.IPv6Network] = field(default_factory=list)

    def __contains__(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv4Address):
            return any(address in network for network in self.v4)
        return any(address in network for network in self.v6)


def _parse_trusted(networks: Iterable[str | IPNetwork]) -> _Trusted:
    trusted = _Trusted()
    for item in networks:
        network = item if not isinstance(item, str) else ipaddress.ip_network(item, strict=False)
        if isinstance(network, ipaddress.IPv4Network):
            trusted.v4.append(network)
        else:
            trusted.v6.append(network)
    return trusted


def _address(source_ip: str) -> IPAddress:
    address = ipaddress.ip_address(source_ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; they are the IPv4 host.
        return address.ipv4_mapped
    return address


class SourceGuard:
    """Per-source rate limit, failed-authentication bans and scanner detection. See the module doc.

    ``source_ip`` arguments are the packet's source address as text (IPv4, IPv6 or IPv4-mapped
    IPv6); anything else raises ValueError. Memory is bounded by ``max_sources``; call
    :meth:`sweep` now and then (every minute) to forget sources whose state has run out.
    """

    def __init__(self, policy: GuardPolicy | None = None) -> None:
        self.policy = policy = policy or GuardPolicy()
        self.counters = GuardCounters()
        self._sources: OrderedDict[IPAddress, _Source] = OrderedDict()
        self._trusted = _parse_trusted(policy.trusted)
        self._scanner = scanner_matcher(policy.scanner_agents)
        self._v6_mask = ((1 << 128) - 1) ^ ((1 << (128 - policy.ipv6_prefix)) - 1)
        self._resolved: dict[str, tuple[IPAddress, bool]] = {}

    # --- configuration ---------------------------------------------------------------------------

    def set_trusted(self, networks: Iterable[str | IPNetwork]) -> None:
        """Replace the trusted networks (when the carriers' addresses change). Takes effect at once,
        also for a source banned before: trust wins."""
        self._trusted = _parse_trusted(networks)
        self._resolved.clear()

    def trusted(self, source_ip: str) -> bool:
        return self._resolve(source_ip)[1]

    def _resolve(self, source_ip: str) -> tuple[IPAddress, bool]:
        """The source's bucket key and whether it is trusted, remembered per address text: the same
        peers send request after request, and parsing the address each time cost more than the
        rest of the check."""
        known = self._resolved.get(source_ip)
        if known is None:
            address = _address(source_ip)
            known = (self._key(address), address in self._trusted)
            if len(self._resolved) >= self.policy.max_sources:
                self._resolved.clear()
            self._resolved[source_ip] = known
        return known

    # --- per request -----------------------------------------------------------------------------

    def check(self, source_ip: str, user_agent: str | None, now: float) -> Verdict:
        """The verdict on one request from ``source_ip``; counts it against the source's rate."""
        key, trusted = self._resolve(source_ip)
        if trusted:
            self.counters.allowed += 1
            return Verdict.ALLOW
        source = self._touch(key, now)
        if source.banned_until > now:
            self.counters.refused_while_banned += 1
            return Verdict.BANNED
        if user_agent and self._scanner.search(user_agent.lower()) is not None:
            self.counters.scanners_dropped += 1
            self._ban(source, now)
            return Verdict.DROP_SILENTLY
        self._refill(source, now)
        if source.tokens >= 1.0:
            source.tokens -= 1.0
            self.counters.allowed += 1
            return Verdict.ALLOW
        self.counters.rate_limited += 1
        limit = self.policy.flood_requests_to_ban
        if limit is not None:
            if now - source.flood_start >= self.policy.flood_window_s:
                source.flood_start = now
                source.flood_count = 0
            source.flood_count += 1
            if source.flood_count >= limit:
                self._ban(source, now)
                return Verdict.BANNED
        return Verdict.RATE_LIMITED

    def auth_failed(self, source_ip: str, now: float) -> bool:
        """Count refused credentials from ``source_ip``; True when this failure banned it.

        Call it for credentials the digest check refused (wrong password, unknown user), not for
        the first 401 that every registration meets (RFC 3261 22.2).
        """
        key, trusted = self._resolve(source_ip)
        if trusted:
            return False
        self.counters.auth_failures += 1
        source = self._touch(key, now)
        if source.banned_until > now:
            # A request let in before the ban began; the ban already covers it.
            return False
        failures = source.failures
        failures.append(now)
        if len(failures) == failures.maxlen and now - failures[0] <= self.policy.failure_window_s:
            self._ban(source, now)
            return True
        return False

    def auth_succeeded(self, source_ip: str, now: float) -> None:
        """Credentials from ``source_ip`` were accepted."""
        if not self.policy.reset_failures_on_success:
            return
        source = self._sources.get(self._resolve(source_ip)[0])
        if source is not None:
            source.failures.clear()

    def ban(self, source_ip: str, now: float) -> float:
        """Ban ``source_ip`` (another detector's decision, an operator's); returns when it ends.

        Trusted sources are not banned (the result is ``now``). An active ban is kept as it is.
        """
        key, trusted = self._resolve(source_ip)
        if trusted:
            return now
        source = self._touch(key, now)
        if source.banned_until <= now:
            self._ban(source, now)
        return source.banned_until

    def banned(self, source_ip: str, now: float) -> bool:
        key, trusted = self._resolve(source_ip)
        if trusted:
            return False
        source = self._sources.get(key)
        return source is not None and source.banned_until > now

    def wait_s(self, source_ip: str, now: float) -> float:
        """Seconds until ``source_ip`` may be served again: what is left of its ban, or the time
        its bucket needs for one token; 0 when it may send now."""
        key, trusted = self._resolve(source_ip)
        if trusted:
            return 0.0
        source = self._sources.get(key)
        if source is None:
            return 0.0
        if source.banned_until > now:
            return source.banned_until - now
        self._refill(source, now)
        return max(0.0, (1.0 - source.tokens) / self.policy.rate_per_s)

    # --- memory ----------------------------------------------------------------------------------

    @property
    def tracked_sources(self) -> int:
        return len(self._sources)

    def sweep(self, now: float) -> int:
        """Forget sources whose state is back to that of a stranger; returns how many."""
        policy = self.policy
        full_after = policy.burst / policy.rate_per_s
        forgotten = [
            key
            for key, source in self._sources.items()
            if source.banned_until <= now
            and now - source.offence_at > policy.offence_memory_s
            and (not source.failures or now - source.failures[-1] > policy.failure_window_s)
            and now - source.stamp >= full_after
            and now - source.flood_start >= policy.flood_window_s
        ]
        for key in forgotten:
            del self._sources[key]
        self.counters.evicted += len(forgotten)
        return len(forgotten)

    # --- internals -------------------------------------------------------------------------------

    def _key(self, address: IPAddress) -> IPAddress:
        if isinstance(address, ipaddress.IPv6Address) and self.policy.ipv6_prefix < 128:
            return ipaddress.IPv6Address(int(address) & self._v6_mask)
        return address

    def _touch(self, key: IPAddress, now: float) -> _Source:
        sources = self._sources
        source = sources.get(key)
        if source is not None:
            sources.move_to_end(key)
            return source
        if len(sources) >= self.policy.max_sources:
            sources.popitem(last=False)
            self.counters.evicted += 1
        source = _Source(
            tokens=self.policy.burst,
            stamp=now,
            failures=deque(maxlen=self.policy.failures_to_ban),
        )
        sources[key] = source
        return source

    def _refill(self, source: _Source, now: float) -> None:
        # max(0, ...): a clock that steps back must not drain the bucket.
        elapsed = max(0.0, now - source.stamp)
        source.tokens = min(self.policy.burst, source.tokens + elapsed * self.policy.rate_per_s)
        source.stamp = max(source.stamp, now)

    def _ban(self, source: _Source, now: float) -> None:
        policy = self.policy
        if now - source.offence_at > policy.offence_memory_s:
            source.offences = 0
        source.offences += 1
        source.offence_at = now
        duration = min(policy.max_ban_s, policy.ban_s * policy.ban_growth ** min(source.offences - 1, 64))
        source.banned_until = now + duration
        source.failures.clear()
        source.flood_count = 0
        self.counters.bans += 1
