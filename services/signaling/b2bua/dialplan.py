"""The dial plan: what a number an agent dialed means, and whether the call may go out.

Pure: given the dialed text, the calling agent, the tenant's agents and trunks and the calls in
progress, it returns where the call goes or which rule refused it. The rules stand against toll
fraud as much as against mistakes: only numbers that normalize (shared.numbers), never a
premium-rate number unless a trunk explicitly allows its prefix, only the destination prefixes a
trunk allows, and the concurrency limits of the old product (``max_concurrent_calls``) per trunk,
per agent and per tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.numbers import NumberError, NumberKind, normalize
from shared.records import AgentRecord, TrunkRecord

#: Service codes every tenant has (the echo test line of ARCHITECTURE.md "Running it").
DEFAULT_SERVICE_CODES = {"*43": "echo", "*44": "demo"}


class ServiceLine(StrEnum):
    ECHO = "echo"
    DEMO = "demo"


@dataclass(frozen=True, slots=True)
class ToAgent:
    """An internal call to another agent by extension (RFC 3261 routing to its registrations)."""

    agent: AgentRecord


@dataclass(frozen=True, slots=True)
class ToService:
    line: ServiceLine


@dataclass(frozen=True, slots=True)
class ToTrunk:
    trunk: TrunkRecord
    #: E.164 of the customer, as the carrier gets it.
    number: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The call may not be placed; ``rule`` names the rule for the event and the agent's screen."""

    rule: str
    sip_status: int
    reason: str


Route = ToAgent | ToService | ToTrunk | Refused


@dataclass(frozen=True, slots=True)
class CallCounts:
    """Calls in progress, for the concurrency limits."""

    by_trunk: Mapping[str, int]
    by_agent: Mapping[str, int]
    by_tenant: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    max_concurrent_calls: int = 100
    default_region: str = "GE"
    service_codes: Mapping[str, str] | None = None


def route(
    dialed: str,
    caller: AgentRecord,
    agents: Iterable[AgentRecord],
    trunks: Iterable[TrunkRecord],
    counts: CallCounts,
    policy: TenantPolicy | None = None,
) -> Route:
    """Decide where ``dialed`` goes for ``caller`` (only the caller's tenant is considered)."""
    policy = policy or TenantPolicy()
    tenant = caller.tenant_id
    codes = policy.service_codes if policy.service_codes is not None else DEFAULT_SERVICE_CODES
    text = dialed.strip()
    if text in codes:
        return ToService(ServiceLine(codes[text]))
    if counts.by_tenant.get(tenant, 0) >= policy.max_concurrent_calls:
        return Refused(
            "tenant_limit", 403, f"the tenant's limit of {policy.max_concurrent_calls} calls is reached"
        )
    if counts.by_agent.get(caller.agent_id, 0) >= caller.max_concurrent_calls:
        return Refused("agent_limit", 486, f"you already have {caller.max_concurrent_calls} calls")
    own_trunks = [t for t in trunks if t.tenant_id == tenant and t.is_active]
    region = next((t.default_region for t in own_trunks if t.is_default), policy.default_region)
    try:
        number = normalize(text, region)
    except NumberError as exc:
        return Refused("invalid_number", 484, f"{text!r} is not a number: {exc.reason}")
    if number.kind is NumberKind.SERVICE_CODE:
        return Refused("unknown_service_code", 404, f"{text} is not a service of this line")
    if number.kind is NumberKind.EXTENSION:
        for agent in agents:
            if agent.tenant_id == tenant and agent.extension == number.number and agent.enabled:
                if agent.agent_id == caller.agent_id:
                    return Refused("own_extension", 486, "that is your own extension")
                return ToAgent(agent)
        return Refused("unknown_extension", 404, f"no agent has extension {number.number}")
    return _to_trunk(number.number, number.kind, own_trunks, counts)


def route_number(
    dialed: str, tenant_id: str, trunks: Iterable[TrunkRecord], policy: TenantPolicy | None = None
) -> ToTrunk | Refused:
    """Where a number goes for the tenant itself, with no agent behind it (a text the helpdesk
    sends): the same normalization, allow-lists and premium-rate block as an agent's; no call limits."""
    policy = policy or TenantPolicy()
    own_trunks = [t for t in trunks if t.tenant_id == tenant_id and t.is_active]
    region = next((t.default_region for t in own_trunks if t.is_default), policy.default_region)
    text = dialed.strip()
    try:
        number = normalize(text, region)
    except NumberError as exc:
        return Refused("invalid_number", 484, f"{text!r} is not a number: {exc.reason}")
    if not number.is_phone_number:
        return Refused("not_a_phone_number", 484, f"{text} is not a customer's phone number")
    decision = _to_trunk(number.number, number.kind, own_trunks, CallCounts({}, {}, {}))
    assert isinstance(decision, ToTrunk | Refused)
    return decision


def _to_trunk(e164: str, kind: NumberKind, trunks: list[TrunkRecord], counts: CallCounts) -> Route:
    if not trunks:
        return Refused("no_trunk", 503, "the tenant has no active trunk")
    # The trunk whose allowed prefix matches longest wins; a trunk that lists no prefixes takes
    # anything its tenant may dial, and the default trunk is preferred among those.
    best: tuple[int, bool, TrunkRecord] | None = None
    for trunk in trunks:
        if trunk.allowed_prefixes:
            matched = max((len(p) for p in trunk.allowed_prefixes if e164.startswith(p)), default=-1)
            if matched < 0:
                continue
        else:
            matched = 0
        candidate = (matched, trunk.is_default, trunk)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        return Refused("destination_not_allowed", 403, f"no trunk may call {e164}")
    matched, _, trunk = best
    if kind is NumberKind.PREMIUM_RATE and matched <= 0:
        # Toll fraud's favourite destination: only a trunk that names the prefix may reach it.
        return Refused("premium_rate_blocked", 403, f"premium-rate numbers such as {e164} are blocked")
    if counts.by_trunk.get(trunk.trunk_id, 0) >= trunk.max_concurrent_calls:
        return Refused(
            "trunk_limit", 503, f"trunk {trunk.name} is at its limit of {trunk.max_concurrent_calls} calls"
        )
    return ToTrunk(trunk, e164)
