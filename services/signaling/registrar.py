"""The registrar for agents (RFC 3261 10.3, RFC 5626 outbound), sans-I/O.

Authentication happens before a request gets here; this module decides what a REGISTER does to
the bindings of the authenticated agent's address of record and what the 200 lists. A binding
remembers the flow it arrived on: a browser's Contact (a random ``.invalid`` host, PEERS.md) can
only be reached over that very connection, so requests to an agent are routed by flow, and a
binding whose connection closed is gone.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from services.signaling.sip.address import Address
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.message import Request, supported_tags
from services.signaling.transport.flow import Flow


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 3600
    #: Used when neither the Contact nor the request says (RFC 3261 10.2.1.1 leaves it to us).
    default_expires: int = 600
    max_contacts_per_aor: int = 10


@dataclass(slots=True)
class Binding:
    """One registered contact of an agent."""

    aor: str
    contact: Address
    flow: Flow
    expires_at: float
    call_id: str
    cseq: int
    #: RFC 5626 instance and reg-id: a browser reconnecting is the same agent, not a new contact.
    instance: str | None = None
    reg_id: str | None = None
    user_agent: str | None = None

    @property
    def key(self) -> Hashable:
        if self.instance is not None:
            return ("instance", self.instance, self.reg_id)
        return ("contact", str(self.contact.uri))

    def remaining(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class Refused:
    """The REGISTER is refused: answer ``status`` with ``reason`` (and ``headers``)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Registered:
    """The REGISTER was applied; answer 200 listing ``bindings`` (RFC 3261 10.3 step 8)."""

    bindings: tuple[Binding, ...]
    added: tuple[Binding, ...]
    removed: tuple[Binding, ...]
    outbound: bool


Outcome = Refused | Registered


@dataclass
class Registrar:
    policy: RegistrarPolicy = field(default_factory=RegistrarPolicy)

    def __post_init__(self) -> None:
        self._bindings: dict[str, dict[Hashable, Binding]] = {}
        self._expiry: list[tuple[float, int, str, Hashable]] = []
        self._seq = itertools.count()
        self._count = 0

    # --- REGISTER -------------------------------------------------------------------------

    def register(self, request: Request, aor: str, flow: Flow, now: float) -> Outcome:
        """Apply a REGISTER for ``aor`` (already authenticated and authorized, steps 1-5)."""
        try:
            contacts = request.contacts
            header_expires = request.expires
        except SipParseError as exc:
            return Refused(400, exc.reason)
        current = self._bindings.get(aor, {})
        call_id, cseq = request.call_id, request.cseq.seq
        if contacts == "*":
            # Step 6: "*" only alone and with Expires: 0 (RFC 3261 10.2.2).
            if header_expires != 0:
                return Refused(400, "Contact * needs Expires: 0")
            cleared = tuple(self._drop(aor, list(current)))
            return Registered(self.bindings(aor, now), (), cleared, outbound=False)
        if not contacts:
            # A query: list the bindings and change nothing (10.2.3).
            return Registered(self.bindings(aor, now), (), (), outbound=False)
        plans: list[tuple[Binding, int]] = []
        for contact in contacts:
            expires = contact.expires if contact.expires is not None else header_expires
            if expires is None:
                expires = self.policy.default_expires
            if 0 < expires < self.policy.min_expires:
                # Step 7: too brief (RFC 3261 10.3, 21.4.17).
                return Refused(423, "Interval Too Brief", (("Min-Expires", str(self.policy.min_expires)),))
            expires = min(expires, self.policy.max_expires)
            instance = _instance(contact)
            binding = Binding(
                aor=aor,
                contact=contact,
                flow=flow,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                instance=instance,
                reg_id=contact.params.get("reg-id") if instance else None,
                user_agent=request.headers.get("User-Agent"),
            )
            existing = current.get(binding.key)
            if existing is not None and existing.call_id == call_id and existing.cseq >= cseq:
                # Step 7: an older or repeated request must not undo a newer one.
                return Refused(400, "CSeq not higher than the registered one")
            plans.append((binding, expires))
        added: list[Binding] = []
        removed: list[Binding] = []
        for binding, expires in plans:
            if expires == 0:
                removed += self._drop(aor, [binding.key])
                continue
            is_new = binding.key not in current
            if is_new and len(current) >= self.policy.max_contacts_per_aor:
                return Refused(403, f"Too many registrations (at most {self.policy.max_contacts_per_aor})")
            previous = current.get(binding.key)
            if previous is not None and previous.flow != binding.flow:
                removed.append(previous)  # the same instance on a new connection replaces the old flow
            current = self._bindings.setdefault(aor, {})
            if binding.key not in current:
                self._count += 1
            current[binding.key] = binding
            heapq.heappush(self._expiry, (binding.expires_at, next(self._seq), aor, binding.key))
            if is_new or (previous is not None and previous.flow != binding.flow):
                added.append(binding)
        outbound = any(b.reg_id is not None for b, _ in plans) and "outbound" in supported_tags(request)
        return Registered(self.bindings(aor, now), tuple(added), tuple(removed), outbound)

    # --- lookups and housekeeping ---------------------------------------------------------

    def bindings(self, aor: str, now: float) -> tuple[Binding, ...]:
        return tuple(b for b in self._bindings.get(aor, {}).values() if b.expires_at > now)

    def aors(self) -> Iterable[str]:
        return self._bindings.keys()

    def next_deadline(self) -> float | None:
        while self._expiry:
            when, _, aor, key = self._expiry[0]
            binding = self._bindings.get(aor, {}).get(key)
            if binding is not None and binding.expires_at == when:
                return when
            heapq.heappop(self._expiry)
        return None

    def expire(self, now: float) -> list[Binding]:
        """Remove the bindings whose time ran out (RFC 3261 10.3: they just cease to exist)."""
        gone: list[Binding] = []
        while self._expiry and self._expiry[0][0] <= now:
            when, _, aor, key = heapq.heappop(self._expiry)
            binding = self._bindings.get(aor, {}).get(key)
            if binding is not None and binding.expires_at == when:
                gone += self._drop(aor, [key])
        return gone

    def flow_closed(self, flow: Flow) -> list[Binding]:
        """A connection closed: its bindings cannot be reached any more (RFC 5626 5.2)."""
        gone: list[Binding] = []
        for aor, bindings in list(self._bindings.items()):
            keys = [key for key, b in bindings.items() if b.flow == flow]
            gone += self._drop(aor, keys)
        return gone

    def remove_aor(self, aor: str) -> list[Binding]:
        """The agent was deleted or disabled: forget every binding."""
        return self._drop(aor, list(self._bindings.get(aor, {})))

    def __len__(self) -> int:
        return self._count

    def _drop(self, aor: str, keys: Iterable[Hashable]) -> list[Binding]:
        bindings = self._bindings.get(aor)
        if bindings is None:
            return []
        gone = [b for key in keys if (b := bindings.pop(key, None)) is not None]
        self._count -= len(gone)
        if not bindings:
            del self._bindings[aor]
        return gone


def _instance(contact: Address) -> str | None:
    value = contact.params.get("+sip.instance")
    return value.strip('"') if value else None
