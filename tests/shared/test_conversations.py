"""The conversation id that threads one customer's calls and messages in one tenant."""

from __future__ import annotations

import uuid

from shared.conversations import conversation_id, threaded
from shared.events import (
    AgentPresence,
    AgentPresenceData,
    CallCreated,
    CallCreatedData,
    Direction,
    PresenceState,
)


def test_same_customer_same_tenant_same_id_and_nothing_else_shares_it() -> None:
    one = conversation_id("acme", "+995555123456")
    assert one == conversation_id("acme", "+995555123456")
    assert isinstance(one, uuid.UUID)
    assert one.version == 5
    assert one != conversation_id("globex", "+995555123456")
    assert one != conversation_id("acme", "+995555123457")
    assert conversation_id("acme", "100") is None
    assert conversation_id("acme", "anonymous") is None


def created(direction: Direction, from_number: str, to_number: str) -> CallCreated:
    data = CallCreatedData(direction=direction, from_number=from_number, to_number=to_number)
    return CallCreated(tenant_id="acme", call_id="c1", sequence=0, data=data)


def test_calls_with_a_customer_carry_the_customers_conversation() -> None:
    inbound = threaded(created(Direction.INBOUND, "+995555123456", "+99532200200"))
    outbound = threaded(created(Direction.OUTBOUND, "100", "+995555123456"))
    assert isinstance(inbound, CallCreated)
    assert isinstance(outbound, CallCreated)
    assert (
        inbound.data.conversation_id
        == outbound.data.conversation_id
        == conversation_id("acme", "+995555123456")
    )
    internal = threaded(created(Direction.INTERNAL, "100", "101"))
    assert isinstance(internal, CallCreated)
    assert internal.data.conversation_id is None
    anonymous = threaded(created(Direction.INBOUND, "anonymous", "+99532200200"))
    assert isinstance(anonymous, CallCreated)
    assert anonymous.data.conversation_id is None
    presence = AgentPresence(
        tenant_id="acme", agent_id="a1", data=AgentPresenceData(state=PresenceState.REGISTERED, contacts=1)
    )
    assert threaded(presence) is presence
