"""The dial plan: numbers, extensions, service codes, trunks, limits and toll-fraud rules."""

from __future__ import annotations

import pytest

from services.signaling.b2bua.dialplan import (
    CallCounts,
    Refused,
    ServiceLine,
    TenantPolicy,
    ToAgent,
    ToService,
    ToTrunk,
    route,
)
from shared.records import TrunkRecord, agent_record

ALICE = agent_record(
    tenant_id="acme", agent_id="alice", extension="100", sip_username="100", domain="acme.test", password="x"
)
BOB = agent_record(
    tenant_id="acme", agent_id="bob", extension="101", sip_username="101", domain="acme.test", password="y"
)
EVE = agent_record(
    tenant_id="evil", agent_id="eve", extension="102", sip_username="102", domain="evil.test", password="z"
)
GEO = TrunkRecord(
    tenant_id="acme",
    trunk_id="geo",
    name="Magti",
    sip_server="sip.geo.test",
    is_default=True,
    allowed_prefixes=("+995",),
    max_concurrent_calls=2,
)
WORLD = TrunkRecord(
    tenant_id="acme",
    trunk_id="world",
    name="World",
    sip_server="sip.world.test",
    allowed_prefixes=("+44", "+1"),
)
OTHER_TENANT = TrunkRecord(
    tenant_id="evil", trunk_id="evil-trunk", name="Evil", sip_server="sip.evil.test", is_default=True
)
IDLE = CallCounts({}, {}, {})


def go(
    dialed: str,
    *,
    counts: CallCounts = IDLE,
    trunks: tuple[TrunkRecord, ...] = (GEO, WORLD, OTHER_TENANT),
    policy: TenantPolicy | None = None,
) -> object:
    return route(dialed, ALICE, [ALICE, BOB, EVE], trunks, counts, policy)


@pytest.mark.parametrize("dialed", ["555123456", "0555123456", "00995555123456", "+995 555 12 34 56"])
def test_georgian_numbers_go_out_on_the_georgian_trunk(dialed: str) -> None:
    assert go(dialed) == ToTrunk(GEO, "+995555123456")


def test_the_longest_allowed_prefix_picks_the_trunk() -> None:
    assert go("+44 20 7183 8750") == ToTrunk(WORLD, "+442071838750")


def test_a_destination_no_trunk_allows_is_refused_with_the_rule() -> None:
    result = go("+49 30 1234567")
    assert isinstance(result, Refused)
    assert (result.rule, result.sip_status) == ("destination_not_allowed", 403)
    assert "+49301234567" in result.reason


def test_premium_rate_is_blocked_unless_a_trunk_names_it() -> None:
    open_trunk = TrunkRecord(
        tenant_id="acme", trunk_id="any", name="Any", sip_server="a.test", is_default=True
    )
    result = go("+1 900 555 0123", trunks=(open_trunk,))
    assert isinstance(result, Refused)
    assert result.rule == "premium_rate_blocked"
    premium = TrunkRecord(
        tenant_id="acme", trunk_id="p", name="P", sip_server="p.test", allowed_prefixes=("+1900",)
    )
    assert go("+1 900 555 0123", trunks=(premium,)) == ToTrunk(premium, "+19005550123")


def test_extensions_reach_agents_of_the_same_tenant_only() -> None:
    assert go("101") == ToAgent(BOB)
    result = go("102")  # Eve's extension, in another tenant
    assert isinstance(result, Refused)
    assert result.rule == "unknown_extension"
    own = go("100")
    assert isinstance(own, Refused)
    assert own.rule == "own_extension"


def test_service_codes() -> None:
    assert go("*43") == ToService(ServiceLine.ECHO)
    unknown = go("*99")
    assert isinstance(unknown, Refused)
    assert unknown.rule == "unknown_service_code"


@pytest.mark.parametrize(
    ("counts", "rule"),
    [
        (CallCounts({}, {}, {"acme": 100}), "tenant_limit"),
        (CallCounts({}, {"alice": 2}, {}), "agent_limit"),
        (CallCounts({"geo": 2}, {}, {}), "trunk_limit"),
    ],
)
def test_concurrency_limits(counts: CallCounts, rule: str) -> None:
    result = go("555123456", counts=counts)
    assert isinstance(result, Refused)
    assert result.rule == rule


def test_garbage_is_refused_with_the_reason() -> None:
    result = go("call mom")
    assert isinstance(result, Refused)
    assert (result.rule, result.sip_status) == ("invalid_number", 484)
    assert "letter" in result.reason


def test_no_trunk_of_ones_own_tenant() -> None:
    result = go("555123456", trunks=(OTHER_TENANT,))
    assert isinstance(result, Refused)
    assert result.rule == "no_trunk"


def test_tenant_policy_region_and_codes() -> None:
    uk = TrunkRecord(
        tenant_id="acme", trunk_id="uk", name="UK", sip_server="uk.test", is_default=True, default_region="GB"
    )
    assert go("020 7183 8750", trunks=(uk,)) == ToTrunk(uk, "+442071838750")
    assert go("*1", policy=TenantPolicy(service_codes={"*1": "demo"})) == ToService(ServiceLine.DEMO)
