"""Message events through the api's real consumers on a real nats-server: live events stream the
``message`` family to the tenant (nobody else's), and the durable ingestion puts the message on
the customer's conversation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import connect

from shared.bus import Bus
from shared.conversations import conversation_id
from shared.events import (
    Direction,
    MessageContent,
    MessageDelivered,
    MessageDeliveredData,
    MessageReceived,
)
from tests.api.eventing import eventually, publish
from tests.api.test_live_events import LiveApi, live, receive, wait_for_consumers

__all__ = ["live"]  # the fixture, shared with test_live_events.py

CUSTOMER = "+995555123456"


def a_message(tenant_id: str, message_id: str, text: str) -> tuple[MessageReceived, MessageDelivered]:
    envelope: dict[str, Any] = {
        "tenant_id": tenant_id,
        "message_id": message_id,
        "customer_number": CUSTOMER,
        "conversation_id": conversation_id(tenant_id, CUSTOMER),
    }
    now = datetime.now(UTC)
    content = MessageContent(
        direction=Direction.INBOUND,
        from_number=CUSTOMER,
        to_number="+99532200200",
        trunk_id="geo",
        text=text,
        size_bytes=len(text.encode()),
    )
    return (
        MessageReceived(**envelope, occurred_at=now, data=content),
        MessageDelivered(
            **envelope,
            agent_id="agt_1",
            occurred_at=now,
            data=MessageDeliveredData(sip_status=200, waited_s=0.1),
        ),
    )


async def test_message_events_live_and_on_the_conversation(live: LiveApi, bus: Bus) -> None:
    acme = await live.api.tenant("Acme", "acme.example")
    globex = await live.api.tenant("Globex", "globex.example")
    durable = (await bus.js.stream_info("MESSAGE_EVENTS")).state.consumer_count
    async with connect(live.url(acme.token, types="message.*")) as ws:
        await wait_for_consumers(bus, "MESSAGE_EVENTS", durable + 1)
        await publish(bus, *a_message(globex.tenant_id, "theirs", "not for acme"))
        mine = a_message(acme.tenant_id, "mine", "გამარჯობა")
        await publish(bus, *mine)
        got = await receive(ws, 2)
    assert [(e["type"], e["message_id"], e["tenant_id"]) for e in got] == [
        ("message.received", "mine", acme.tenant_id),
        ("message.delivered", "mine", acme.tenant_id),
    ]
    assert got[0] == json.loads(mine[0].model_dump_json())

    async def listed() -> list[Any] | None:
        page = (await acme.client.get(f"/v1/conversations/{CUSTOMER}")).json()
        items: list[Any] = page["items"]
        return items if items and items[0]["message"]["status"] == "delivered" else None

    [item] = await eventually(listed, "the message never reached the conversation")
    assert (item["message"]["id"], item["message"]["text"], item["message"]["agent_id"]) == (
        "mine",
        "გამარჯობა",
        "agt_1",
    )
