"""``/v1/calls``: filters, keyset pages, statistics and the 422s, over calls ingested from events
(the ingestion's batch handler called directly; test_call_log.py covers the bus around it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.api.db import Database
from services.api.ingestion import EventIngestion
from services.api.routers.calls import period_bounds
from shared import subjects
from shared.bus import Delivery
from shared.events import (
    CallAnswered,
    CallAnsweredData,
    CallCreated,
    CallCreatedData,
    CallEnded,
    CallEndedData,
    CallEvent,
    CallStatus,
    CallTransferred,
    CallTransferredData,
    Direction,
    EndCause,
    Event,
    Party,
    TransferKind,
)
from tests.api.conftest import Tenancy


class Calls:
    """Builds calls event by event and ingests them as the consumer would."""

    def __init__(self, db: Database, tenant_id: str) -> None:
        self.ingestion = EventIngestion(db)
        self.tenant_id = tenant_id
        self.stream_sequence = 0

    async def add(
        self,
        call_id: str,
        start: datetime,
        *,
        direction: Direction = Direction.OUTBOUND,
        agent: str | None = "agt_1",
        to: str = "+995555123456",
        answered: bool = True,
        end: CallStatus | None = CallStatus.COMPLETED,
        transferred: bool = False,
        talk_s: float = 30,
    ) -> None:
        common: dict[str, Any] = {"tenant_id": self.tenant_id, "call_id": call_id}
        events: list[CallEvent] = [
            CallCreated(
                **common,
                sequence=0,
                occurred_at=start,
                data=CallCreatedData(
                    direction=direction, from_number="+995322000000", to_number=to, agent_id=agent
                ),
            )
        ]
        if answered:
            events.append(
                CallAnswered(
                    **common, sequence=1, occurred_at=start + timedelta(seconds=3), data=CallAnsweredData()
                )
            )
        if transferred:
            events.append(
                CallTransferred(
                    **common,
                    sequence=2,
                    occurred_at=start + timedelta(seconds=10),
                    data=CallTransferredData(kind=TransferKind.BLIND, target="101"),
                )
            )
        if end is not None:
            events.append(
                CallEnded(
                    **common,
                    sequence=3,
                    occurred_at=start + timedelta(seconds=3 + talk_s),
                    data=CallEndedData(
                        status=end,
                        cause=EndCause.NORMAL_CLEARING if answered else EndCause.NO_ANSWER,
                        ended_by=Party.AGENT,
                        message="ended",
                        answered_at=start + timedelta(seconds=3) if answered else None,
                        duration_s=3 + talk_s,
                        talk_time_s=talk_s if answered else 0,
                    ),
                )
            )
        await self.ingest(events)

    async def ingest(self, events: list[CallEvent]) -> None:
        deliveries: list[Delivery[Event]] = []
        for event in events:
            self.stream_sequence += 1
            deliveries.append(
                Delivery(
                    event,
                    subjects.event_subject(event),
                    1,
                    stream_sequence=self.stream_sequence,
                    stored_at=datetime.now(UTC),
                )
            )
        await self.ingestion.ingest(deliveries)


@pytest.fixture
def calls(acme: Tenancy, database: Database) -> Calls:
    return Calls(database, acme.tenant_id)


def ids(page: dict[str, Any]) -> list[str]:
    return [c["id"] for c in page["items"]]


async def test_pages_follow_one_another_without_gaps_or_repeats(acme: Tenancy, calls: Calls) -> None:
    base = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    # Three calls share a start time: the id breaks the tie.
    starts = {"c1": 0, "c2": 60, "c3": 60, "c4": 60, "c5": 120, "c6": 180, "c7": 240}
    for call_id, offset in starts.items():
        await calls.add(call_id, base + timedelta(seconds=offset))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await acme.client.get("/v1/calls", params=params)).json()
        seen += ids(page)
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["c7", "c6", "c5", "c4", "c3", "c2", "c1"]
    assert pages == 3


async def test_filters(acme: Tenancy, calls: Calls) -> None:
    base = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    await calls.add("out-1", base, agent="agt_1", to="+995555123456")
    await calls.add(
        "in-1", base + timedelta(minutes=1), direction=Direction.INBOUND, agent="agt_2", to="+995322111111"
    )
    await calls.add(
        "in-missed",
        base + timedelta(minutes=2),
        direction=Direction.INBOUND,
        agent=None,
        answered=False,
        end=CallStatus.NO_ANSWER,
        to="+995322111112",
    )
    await calls.add(
        "out-busy", base + timedelta(minutes=3), answered=False, end=CallStatus.BUSY, to="+995599000000"
    )

    async def listed(**params: Any) -> list[str]:
        response = await acme.client.get("/v1/calls", params=params)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert await listed(direction="inbound") == ["in-missed", "in-1"]
    assert await listed(status=["busy", "no-answer"]) == ["out-busy", "in-missed"]
    assert await listed(agent_id="agt_2") == ["in-1"]
    # The number as an agent types it, normalized in the tenant's region (GE), or in E.164.
    assert await listed(number="555 12 34 56") == ["out-1"]
    assert await listed(number="+995599000000") == ["out-busy"]
    assert await listed(number="+995322000000") == ["out-busy", "in-missed", "in-1", "out-1"]
    since = (base + timedelta(minutes=1)).isoformat()
    until = (base + timedelta(minutes=3)).isoformat()
    assert await listed(since=since, until=until) == ["in-missed", "in-1"]
    assert await listed(since="2026-11-20T12:02:00") == ["out-busy", "in-missed"]  # no zone: UTC


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"direction": "sideways"}, "direction"),
        ({"status": "exploded"}, "status[0]"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-20T12:00:00Z", "until": "2026-11-20T11:00:00Z"}, "until"),
    ],
)
async def test_bad_filters_are_422_naming_the_field(
    acme: Tenancy, params: dict[str, Any], field: str
) -> None:
    response = await acme.client.get("/v1/calls", params=params)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["detail"]] == [field]


async def test_unknown_call_is_404(acme: Tenancy) -> None:
    assert (await acme.client.get("/v1/calls/no-such-call")).status_code == 404
    assert (await acme.client.get("/v1/calls/" + "x" * 300)).status_code == 404


async def test_stats_count_every_answered_call(acme: Tenancy, calls: Calls) -> None:
    now = datetime.now(UTC)
    today, _ = period_bounds("today", now)
    start = max(today, now - timedelta(minutes=30))
    await calls.add("completed", start, talk_s=20)
    await calls.add("transferred", start, direction=Direction.INBOUND, transferred=True, end=None, talk_s=0)
    await calls.add("still-talking", start, direction=Direction.INBOUND, end=None)
    await calls.add("missed", start, direction=Direction.INBOUND, answered=False, end=CallStatus.NO_ANSWER)
    await calls.add("busy", start, answered=False, end=CallStatus.BUSY)
    await calls.add("internal", start, direction=Direction.INTERNAL, talk_s=40)
    await calls.add("long-ago", now - timedelta(days=40), talk_s=500)

    stats = (await acme.client.get("/v1/calls/stats", params={"period": "today"})).json()
    assert {k: stats[k] for k in ("total", "answered", "missed", "inbound", "outbound", "internal")} == {
        "total": 6,
        "answered": 4,
        "missed": 1,
        "inbound": 3,
        "outbound": 2,
        "internal": 1,
    }
    assert stats["in_progress"] == 2
    # 4 answered of the 6 whose outcome is known (both unanswered ones ended).
    assert stats["answer_rate"] == round(4 / 6, 4)
    assert stats["average_duration_s"] == 30.0  # (20 + 40) / 2: the ended answered calls
    month = (await acme.client.get("/v1/calls/stats", params={"period": "month"})).json()
    assert month["total"] >= 6
    response = await acme.client.get("/v1/calls/stats", params={"period": "year"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "period"


def test_periods_are_utc_calendar_day_week_and_month() -> None:
    now = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # a Wednesday
    assert period_bounds("today", now) == (
        datetime(2026, 11, 25, tzinfo=UTC),
        datetime(2026, 11, 26, tzinfo=UTC),
    )
    assert period_bounds("week", now) == (
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert period_bounds("month", now) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    december = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert period_bounds("month", december) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
