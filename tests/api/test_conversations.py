"""``/v1/conversations/{number}``: a customer's calls and text messages interleaved newest first,
with keyset pages, other customers and tenants left out, and the 422s; over events ingested by the
ingestion's batch handler (as the consumer hands them over)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.api.db import Database
from services.api.ingestion import EventIngestion
from services.api.retention import sweep
from shared import subjects
from shared.bus import Delivery
from shared.conversations import conversation_id
from shared.events import (
    CallCreated,
    CallCreatedData,
    CallEnded,
    CallEndedData,
    CallStatus,
    Direction,
    EndCause,
    Event,
    EventEnvelope,
    MessageContent,
    MessageDelivered,
    MessageDeliveredData,
    MessageFailed,
    MessageFailedData,
    MessageFailure,
    MessageReceived,
    MessageSent,
    Party,
)
from tests.api.conftest import Tenancy

CUSTOMER = "+995555123456"
BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Timeline:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self.ingestion = EventIngestion(db)
        self.tenant_id = tenant_id
        self.sequence = 0

    async def ingest(self, *events: EventEnvelope) -> None:
        deliveries: list[Delivery[Event]] = []
        for event in events:
            self.sequence += 1
            deliveries.append(
                Delivery(
                    event,  # type: ignore[arg-type]
                    subjects.event_subject(event),
                    1,
                    stream_sequence=self.sequence,
                    stored_at=datetime.now(UTC),
                )
            )
        await self.ingestion.ingest(deliveries)

    async def call(self, call_id: str, minute: int, number: str = CUSTOMER) -> None:
        at = BASE + timedelta(minutes=minute)
        common: dict[str, Any] = {"tenant_id": self.tenant_id, "call_id": call_id}
        await self.ingest(
            CallCreated(
                **common,
                sequence=0,
                occurred_at=at,
                data=CallCreatedData(
                    direction=Direction.INBOUND, from_number=number, to_number="+99532200200"
                ),
            ),
            CallEnded(
                **common,
                sequence=1,
                occurred_at=at + timedelta(seconds=20),
                data=CallEndedData(
                    status=CallStatus.NO_ANSWER,
                    cause=EndCause.NO_ANSWER,
                    ended_by=Party.SYSTEM,
                    message="No answer",
                    duration_s=20,
                ),
            ),
        )

    def envelope(self, message_id: str, number: str = CUSTOMER) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "message_id": message_id,
            "customer_number": number,
            "conversation_id": conversation_id(self.tenant_id, number),
        }

    async def received(self, message_id: str, minute: int, text: str, number: str = CUSTOMER) -> None:
        at = BASE + timedelta(minutes=minute)
        content = MessageContent(
            direction=Direction.INBOUND,
            from_number=number,
            to_number="+99532200200",
            trunk_id="geo",
            text=text,
            size_bytes=len(text.encode()),
        )
        await self.ingest(
            MessageReceived(**self.envelope(message_id, number), occurred_at=at, data=content),
            MessageDelivered(
                **self.envelope(message_id, number),
                agent_id="agt_2",
                occurred_at=at + timedelta(seconds=1),
                data=MessageDeliveredData(sip_status=200, waited_s=1),
            ),
        )

    async def sent(self, message_id: str, minute: int, text: str, *, fails: bool = False) -> None:
        at = BASE + timedelta(minutes=minute)
        content = MessageContent(
            direction=Direction.OUTBOUND,
            from_number="100",
            to_number=CUSTOMER,
            from_agent_id="agt_1",
            trunk_id="geo",
            text=text,
            size_bytes=len(text.encode()),
        )
        outcome: EventEnvelope
        if fails:
            outcome = MessageFailed(
                **self.envelope(message_id),
                agent_id="agt_1",
                occurred_at=at + timedelta(seconds=2),
                data=MessageFailedData(
                    cause=MessageFailure.REJECTED,
                    sip_status=404,
                    reason="The carrier answered 404",
                    waited_s=2,
                ),
            )
        else:
            outcome = MessageDelivered(
                **self.envelope(message_id),
                agent_id="agt_1",
                occurred_at=at + timedelta(seconds=2),
                data=MessageDeliveredData(sip_status=202, waited_s=2),
            )
        # The outcome is taken in before its message (another batch got there first): it still
        # ends as the outcome says.
        await self.ingest(outcome)
        await self.ingest(
            MessageSent(**self.envelope(message_id), agent_id="agt_1", occurred_at=at, data=content)
        )


def kinds(page: dict[str, Any]) -> list[str]:
    return [item[item["kind"]]["id"] for item in page["items"]]


async def test_calls_and_messages_interleave_newest_first_page_by_page(
    acme: Tenancy, database: Database
) -> None:
    timeline = Timeline(database, acme.tenant_id)
    await timeline.call("c1", 0)
    await timeline.received("m1", 1, "გამარჯობა, დამირეკეთ?")
    await timeline.sent("m2", 2, "ახლავე გირეკავთ")
    await timeline.call("c2", 3)
    await timeline.sent("m3", 4, "wrong number?", fails=True)
    # Someone else's call and message, and the same customer in another tenant: not here.
    await timeline.call("other", 5, number="+995599000000")
    await timeline.received("m-other", 6, "hi", number="+995599000000")
    globex = await acme.api.tenant("Globex", "globex.example")
    await Timeline(acme.api.db, globex.tenant_id).received("m-globex", 7, "hello", number=CUSTOMER)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await acme.client.get("/v1/conversations/555123456", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["number"] == CUSTOMER
        assert page["conversation_id"] == str(conversation_id(acme.tenant_id, CUSTOMER))
        seen += kinds(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["m3", "c2", "m2", "m1", "c1"]
    theirs = (await globex.client.get(f"/v1/conversations/{CUSTOMER}")).json()
    assert kinds(theirs) == ["m-globex"]
    assert theirs["conversation_id"] != str(conversation_id(acme.tenant_id, CUSTOMER))

    everything = (await acme.client.get(f"/v1/conversations/{CUSTOMER}")).json()["items"]
    by_id = {item[item["kind"]]["id"]: item for item in everything}
    inbound = by_id["m1"]["message"]
    assert (inbound["direction"], inbound["status"], inbound["agent_id"], inbound["text"]) == (
        "inbound",
        "delivered",
        "agt_2",
        "გამარჯობა, დამირეკეთ?",
    )
    outbound = by_id["m2"]["message"]
    assert (outbound["status"], outbound["agent_id"], outbound["sip_status"]) == ("delivered", "agt_1", 202)
    failed = by_id["m3"]["message"]
    assert (failed["status"], failed["failure_cause"], failed["reason"]) == (
        "failed",
        "rejected",
        "The carrier answered 404",
    )
    call = by_id["c1"]
    assert (call["call"]["status"], call["recordings"]) == ("no-answer", [])
    assert call["at"].startswith("2026-11-20T12:00:00")


async def test_bad_numbers_and_cursors_are_422_naming_them(acme: Tenancy) -> None:
    for number, why in (("abc", "not a phone number"), ("100", "not a customer's phone number")):
        response = await acme.client.get(f"/v1/conversations/{number}")
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["path", "number"]
        assert detail["msg"].startswith(why)
    response = await acme.client.get(f"/v1/conversations/{CUSTOMER}", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_an_empty_conversation_is_an_empty_page(acme: Tenancy) -> None:
    page = (await acme.client.get("/v1/conversations/0555123456")).json()
    assert page == {
        "number": CUSTOMER,
        "conversation_id": str(conversation_id(acme.tenant_id, CUSTOMER)),
        "items": [],
        "next_cursor": None,
    }
    assert uuid.UUID(page["conversation_id"]).version == 5


async def test_messages_follow_the_events_retention(acme: Tenancy, database: Database) -> None:
    timeline = Timeline(database, acme.tenant_id)
    await timeline.received("old", 0, "a month and a half ago")
    await timeline.received("recent", 40 * 24 * 60, "ten days later")
    chosen = await acme.client.patch("/v1/tenant/data-retention", json={"event_days": 30})
    assert chosen.status_code == 200, chosen.text
    swept = await sweep(database, acme.api.settings, BASE + timedelta(days=45))
    assert swept.messages == {acme.tenant_id: 1}
    page = (await acme.client.get(f"/v1/conversations/{CUSTOMER}")).json()
    assert kinds(page) == ["recent"]
