"""The agents signaling knows, mirrored from the api's KV bucket ``agents``.

Lookups happen on every REGISTER, so they are in memory; a KV watcher feeds :meth:`apply` with each
change (and the whole bucket at start-up). A record that does not validate is logged and ignored,
never half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.logging import get_logger
from shared.records import AgentRecord, agent_key

log = get_logger("echodesk.signaling.directory")


@dataclass
class AgentDirectory:
    _agents: dict[str, AgentRecord] = field(default_factory=dict)
    #: What :meth:`agents` returns, kept until the next change: every call's dial plan reads it,
    #: and building it anew cost a pass over every agent of every tenant per INVITE.
    _enabled: tuple[AgentRecord, ...] | None = None

    def apply(self, key: str, value: bytes | None) -> tuple[AgentRecord | None, AgentRecord | None]:
        """Apply one KV change; returns (before, after) so the caller can end what was removed."""
        before = self._agents.get(key)
        self._enabled = None
        if value is None:
            self._agents.pop(key, None)
            return before, None
        try:
            record = AgentRecord.model_validate_json(value)
        except ValidationError as exc:
            log.error("invalid agent record ignored", key=key, error=str(exc).splitlines()[0])
            return before, before
        if agent_key(record.domain, record.sip_username) != key:
            log.error("agent record under the wrong key ignored", key=key)
            return before, before
        self._agents[key] = record
        return before, record

    def find(self, domain: str, sip_username: str) -> AgentRecord | None:
        record = self._agents.get(agent_key(domain, sip_username))
        return record if record is not None and record.enabled else None

    def agents(self) -> tuple[AgentRecord, ...]:
        """Every enabled agent (the dial plan finds extensions among them)."""
        if self._enabled is None:
            self._enabled = tuple(agent for agent in self._agents.values() if agent.enabled)
        return self._enabled

    def __len__(self) -> int:
        return len(self._agents)
