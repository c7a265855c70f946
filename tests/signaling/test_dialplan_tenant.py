"""The dial plan for the tenant itself (a text the helpdesk sends with no agent behind it): the same
normalization, allow-lists and premium-rate block as an agent's number, only its own trunks."""

from __future__ import annotations

import pytest

from services.signaling.b2bua.dialplan import Refused, ToTrunk, route_number
from shared.records import TrunkRecord

GEO = TrunkRecord(
    tenant_id="acme",
    trunk_id="geo",
    name="Geo",
    sip_server="sip.geo.test",
    is_default=True,
    allowed_prefixes=("+995",),
)
IDLE_TRUNK = TrunkRecord(
    tenant_id="acme",
    trunk_id="off",
    name="Off",
    sip_server="sip.off.test",
    is_active=False,
    allowed_prefixes=("+44",),
)
OTHER = TrunkRecord(
    tenant_id="evil", trunk_id="evil", name="Evil", sip_server="sip.evil.test", is_default=True
)
TRUNKS = (GEO, IDLE_TRUNK, OTHER)


def test_a_customers_number_goes_out_on_the_tenants_trunk() -> None:
    assert route_number("555 12 34 56", "acme", TRUNKS) == ToTrunk(GEO, "+995555123456")


@pytest.mark.parametrize(
    ("dialed", "rule", "status"),
    [
        ("101", "not_a_phone_number", 484),
        ("*43", "not_a_phone_number", 484),
        ("hello", "invalid_number", 484),
        ("+442071234567", "destination_not_allowed", 403),
    ],
)
def test_what_is_not_a_customer_or_not_allowed_is_refused(dialed: str, rule: str, status: int) -> None:
    decision = route_number(dialed, "acme", TRUNKS)
    assert isinstance(decision, Refused)
    assert (decision.rule, decision.sip_status) == (rule, status)


def test_only_the_tenants_own_active_trunks() -> None:
    decision = route_number("+995555123456", "nobody", TRUNKS)
    assert isinstance(decision, Refused)
    assert decision.rule == "no_trunk"
