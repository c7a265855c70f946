"""Signaling's copy of the tenants' policies (KV ``tenants``): whether a tenant's calls are recorded."""

from __future__ import annotations

from services.signaling.tenants import TenantDirectory
from shared.records import TenantRecord, tenant_key


def _value(**fields: object) -> bytes:
    return TenantRecord.model_validate({"tenant_id": "acme", **fields}).model_dump_json().encode()


def test_a_tenant_follows_its_record_else_the_platform_default() -> None:
    tenants = TenantDirectory()
    assert tenants.records_calls("acme", True) is True
    assert tenants.records_calls("acme", False) is False
    tenants.apply(tenant_key("acme"), _value(record_calls=False))
    assert tenants.records_calls("acme", True) is False
    assert tenants.records_calls("other", True) is True
    tenants.apply(tenant_key("acme"), _value(record_calls=None, recording_retention_days=7))
    assert tenants.records_calls("acme", False) is False
    tenants.apply(tenant_key("acme"), _value(record_calls=True))
    tenants.apply(tenant_key("acme"), None)
    assert tenants.records_calls("acme", False) is False
    assert len(tenants) == 0


def test_a_record_that_does_not_validate_or_sits_under_another_key_changes_nothing() -> None:
    tenants = TenantDirectory()
    tenants.apply(tenant_key("acme"), _value(record_calls=False))
    tenants.apply(tenant_key("acme"), b'{"tenant_id": "acme", "record_calls": "maybe"}')
    tenants.apply(tenant_key("acme"), b"not json")
    tenants.apply("other", _value(record_calls=True))
    assert tenants.records_calls("acme", True) is False
    assert tenants.records_calls("other", False) is False
