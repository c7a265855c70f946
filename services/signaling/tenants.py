"""Tenants' policies signaling applies, mirrored from the api's KV bucket ``tenants``.

Whether a call is recorded is decided when it is created: the tenant's ``record_calls`` when its
record says, else the platform default (``ECHODESK_SIGNALING_RECORD_CALLS``). A record that does not
validate is logged and ignored (the tenant keeps what it had), never half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.logging import get_logger
from shared.records import TenantRecord, tenant_key

log = get_logger("echodesk.signaling.tenants")


@dataclass
class TenantDirectory:
    _tenants: dict[str, TenantRecord] = field(default_factory=dict)

    def apply(self, key: str, value: bytes | None) -> None:
        """Apply one KV change (the watcher calls this with each, and the whole bucket at start-up)."""
        if value is None:
            self._tenants.pop(key, None)
            return
        try:
            record = TenantRecord.model_validate_json(value)
        except ValidationError as exc:
            log.error("invalid tenant record ignored", key=key, error=str(exc).splitlines()[0])
            return
        if tenant_key(record.tenant_id) != key:
            log.error("tenant record under the wrong key ignored", key=key)
            return
        self._tenants[key] = record

    def records_calls(self, tenant_id: str, default: bool) -> bool:
        record = self._tenants.get(tenant_key(tenant_id))
        if record is None or record.record_calls is None:
            return default
        return record.record_calls

    def __len__(self) -> int:
        return len(self._tenants)


__all__ = ["TenantDirectory"]
