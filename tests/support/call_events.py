"""Whole calls as signaling would publish them (created, ringing, answered, dtmf, quality, ended):
what the api's benchmarks feed the call log and the webhooks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.events import (
    CallAnswered,
    CallCreated,
    CallCreatedData,
    CallDtmf,
    CallDtmfData,
    CallEnded,
    CallEndedData,
    CallEvent,
    CallQuality,
    CallQualityData,
    CallRinging,
    CallStatus,
    Direction,
    EndCause,
    LegKind,
    LegQuality,
    Party,
)

EVENTS_PER_CALL = 6


def answered_call(
    tenant_id: str, call_id: str, start: datetime, *, agent_id: str = "agt_1"
) -> list[CallEvent]:
    common: dict[str, Any] = {"tenant_id": tenant_id, "call_id": call_id}
    quality = LegQuality(
        leg=LegKind.CUSTOMER, codec="PCMU", packets_received=1490, packets_lost=10, jitter_ms=3.0, mos=4.2
    )
    return [
        CallCreated(
            **common,
            sequence=0,
            occurred_at=start,
            data=CallCreatedData(
                direction=Direction.OUTBOUND, from_number="100", to_number="+995555123456", agent_id=agent_id
            ),
        ),
        CallRinging(**common, sequence=1, occurred_at=start + timedelta(seconds=1)),
        CallAnswered(**common, sequence=2, occurred_at=start + timedelta(seconds=4)),
        CallDtmf(
            **common,
            sequence=3,
            occurred_at=start + timedelta(seconds=5),
            data=CallDtmfData(digit="1", duration_ms=100, leg=LegKind.CUSTOMER, method="rfc4733"),
        ),
        CallQuality(
            **common,
            sequence=4,
            occurred_at=start + timedelta(seconds=10),
            data=CallQualityData(legs=[quality]),
        ),
        CallEnded(
            **common,
            sequence=5,
            occurred_at=start + timedelta(seconds=34),
            data=CallEndedData(
                status=CallStatus.COMPLETED,
                cause=EndCause.NORMAL_CLEARING,
                ended_by=Party.CUSTOMER,
                sip_status=200,
                message="Call ended by the customer",
                answered_at=start + timedelta(seconds=4),
                duration_s=34,
                talk_time_s=30,
                quality=[quality],
            ),
        ),
    ]
