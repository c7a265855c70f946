"""Messages waiting for their agent to register, kept in JetStream (stream PENDING_MESSAGES).

A message for an agent with no registration (or whose phones did not answer) is stored under
``messages.pending.<tenant>.<agent>.<message>``, one copy per agent it may go to (a customer's text
to a ring group waits for whichever of its agents registers first). A restart of signaling loses
none of them. Signaling reads an agent's copies when that agent registers, and removes every copy
of a message once it is delivered or has failed; :meth:`JetStreamPending.older_than` finds the ones
that waited past ``ECHODESK_SIGNALING_MESSAGE_PENDING_TTL_S`` so each gets its ``message.failed``.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Protocol

import nats.js.errors
from pydantic import Field

from shared import subjects
from shared.bus import Bus
from shared.events import E164, ContractModel, Direction, Token


class PendingMessage(ContractModel):
    """Everything needed to deliver a message later and to report its outcome."""

    message_id: Token
    tenant_id: Token
    #: The agents it may go to; the first to accept it gets it.
    agent_ids: tuple[Token, ...]
    direction: Direction
    from_uri: str = Field(max_length=512)
    from_name: str | None = Field(default=None, max_length=128)
    to_number: str = Field(max_length=64)
    content_type: str = Field(max_length=64)
    #: The body as received: valid UTF-8 (checked before it was accepted), so JSON keeps it exactly.
    body: str
    accepted_at: datetime
    #: The sending agent, for an internal message.
    from_agent_id: Token | None = None
    customer_number: E164 | None = None
    conversation_id: uuid.UUID | None = None


class PendingStore(Protocol):
    async def put(self, message: PendingMessage) -> None: ...

    async def for_agent(self, tenant_id: str, agent_id: str) -> list[PendingMessage]: ...

    async def remove(self, message: PendingMessage) -> None: ...

    async def older_than(self, cutoff: datetime, limit: int = 1000) -> list[PendingMessage]: ...


class JetStreamPending:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.stream = subjects.PENDING_MESSAGES.name

    async def put(self, message: PendingMessage) -> None:
        data = message.model_dump_json().encode()
        for agent_id in message.agent_ids:
            subject = subjects.pending_message(message.tenant_id, agent_id, message.message_id)
            # The message id de-duplicates a copy put twice (a retried publish).
            await self.bus.js.publish(
                subject, data, stream=self.stream, headers={"Nats-Msg-Id": f"{message.message_id}/{agent_id}"}
            )

    async def for_agent(self, tenant_id: str, agent_id: str) -> list[PendingMessage]:
        return [m for _, m in await self._scan(subjects.pending_message(tenant_id, agent_id), limit=10_000)]

    async def remove(self, message: PendingMessage) -> None:
        for agent_id in message.agent_ids:
            subject = subjects.pending_message(message.tenant_id, agent_id, message.message_id)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.bus.js.purge_stream(self.stream, subject=subject)

    async def older_than(self, cutoff: datetime, limit: int = 1000) -> list[PendingMessage]:
        """The oldest messages accepted before ``cutoff`` (each once, whatever its copies)."""
        found: dict[str, PendingMessage] = {}
        for _, message in await self._scan(subjects.pending_message(), limit=limit * 4):
            if message.accepted_at >= cutoff:
                break  # the stream is in arrival order: the rest are younger
            found.setdefault(message.message_id, message)
            if len(found) >= limit:
                break
        return list(found.values())

    async def _scan(self, subject: str, *, limit: int) -> list[tuple[int, PendingMessage]]:
        """The stored messages on ``subject`` (wildcards allowed) in stream order, by direct reads
        of the next message on the subject (no consumer to create and delete)."""
        found: list[tuple[int, PendingMessage]] = []
        sequence = 1
        while len(found) < limit:
            try:
                raw = await self.bus.js.get_msg(self.stream, seq=sequence, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            if raw.seq is None or raw.data is None:
                break
            sequence = raw.seq + 1
            with contextlib.suppress(ValueError):
                found.append((raw.seq, PendingMessage.model_validate_json(raw.data)))
        return found


__all__ = ["JetStreamPending", "PendingMessage", "PendingStore"]
