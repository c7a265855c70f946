"""The contact ids signaling puts on events: from KV records (bad ones ignored), on every event of a
call with a linked customer until it ended, on message events by their customer, never on others."""

from __future__ import annotations

from services.signaling.contacts import ContactDirectory
from shared.events import (
    AgentPresence,
    AgentPresenceData,
    CallAnswered,
    CallCreated,
    CallCreatedData,
    CallEnded,
    CallEndedData,
    CallStatus,
    Direction,
    EndCause,
    EventEnvelope,
    MessageDelivered,
    MessageDeliveredData,
    Party,
    PresenceState,
    RecordingFailed,
    RecordingFailedData,
)
from shared.records import ContactLink, contact_key

CUSTOMER = "+995555123456"


def linked(contact_id: str = "crm-42", number: str = CUSTOMER, tenant: str = "acme") -> ContactDirectory:
    contacts = ContactDirectory()
    link = ContactLink(tenant_id=tenant, number=number, contact_id=contact_id)
    contacts.apply(contact_key(tenant, number), link.model_dump_json().encode())
    return contacts


def created(call_id: str, direction: Direction, from_number: str, to_number: str) -> CallCreated:
    data = CallCreatedData(direction=direction, from_number=from_number, to_number=to_number)
    return CallCreated(tenant_id="acme", call_id=call_id, sequence=0, data=data)


def ended(call_id: str, sequence: int) -> CallEnded:
    data = CallEndedData(
        status=CallStatus.COMPLETED,
        cause=EndCause.NORMAL_CLEARING,
        ended_by=Party.AGENT,
        message="ok",
        duration_s=5,
    )
    return CallEnded(tenant_id="acme", call_id=call_id, sequence=sequence, data=data)


def contact(event: EventEnvelope) -> str | None:
    return getattr(event, "contact_id", None)


def test_every_event_of_a_linked_customers_call_until_it_ended() -> None:
    contacts = linked()
    events = [
        created("c1", Direction.OUTBOUND, "100", CUSTOMER),
        CallAnswered(tenant_id="acme", call_id="c1", sequence=1),
        ended("c1", 2),
    ]
    assert [contact(contacts.tag(e)) for e in events] == ["crm-42"] * 3
    # Over: a late event of the call is not tagged (its customer is forgotten).
    assert contact(contacts.tag(CallAnswered(tenant_id="acme", call_id="c1", sequence=3))) is None
    inbound = contacts.tag(created("c2", Direction.INBOUND, CUSTOMER, "+99532200200"))
    assert contact(inbound) == "crm-42"


def test_only_the_customers_own_calls_and_messages() -> None:
    contacts = linked()
    others = [
        created("c3", Direction.INTERNAL, "100", "101"),
        created("c4", Direction.OUTBOUND, "100", "+995599000000"),
        created("c5", Direction.INBOUND, "anonymous", "+99532200200"),
        CallCreated(
            tenant_id="globex",
            call_id="c6",
            sequence=0,
            data=CallCreatedData(direction=Direction.OUTBOUND, from_number="100", to_number=CUSTOMER),
        ),
        RecordingFailed(
            tenant_id="acme", call_id="c1", sequence=9, data=RecordingFailedData(recording_id="r", reason="x")
        ),
    ]
    assert [contact(contacts.tag(e)) for e in others] == [None] * len(others)
    presence = AgentPresence(
        tenant_id="acme", agent_id="a1", data=AgentPresenceData(state=PresenceState.REGISTERED, contacts=1)
    )
    assert contacts.tag(presence) is presence
    message = MessageDelivered(
        tenant_id="acme",
        message_id="m1",
        customer_number=CUSTOMER,
        data=MessageDeliveredData(sip_status=200, waited_s=0),
    )
    assert contact(contacts.tag(message)) == "crm-42"
    internal = message.model_copy(update={"customer_number": None})
    assert contact(contacts.tag(internal)) is None


def test_a_link_made_or_removed_during_a_call_applies_from_its_next_event() -> None:
    contacts = ContactDirectory()
    assert contact(contacts.tag(created("c7", Direction.OUTBOUND, "100", CUSTOMER))) is None
    link = ContactLink(tenant_id="acme", number=CUSTOMER, contact_id="crm-7")
    contacts.apply(contact_key("acme", CUSTOMER), link.model_dump_json().encode())
    assert contact(contacts.tag(CallAnswered(tenant_id="acme", call_id="c7", sequence=1))) == "crm-7"
    contacts.apply(contact_key("acme", CUSTOMER), None)
    assert contact(contacts.tag(ended("c7", 2))) is None


def test_bad_records_are_ignored() -> None:
    contacts = linked()
    key = contact_key("acme", CUSTOMER)
    contacts.apply(key, b"{not json")
    contacts.apply(key, b'{"tenant_id": "acme", "number": "555", "contact_id": "x"}')
    other = ContactLink(tenant_id="acme", number="+995599000000", contact_id="crm-9")
    contacts.apply(key, other.model_dump_json().encode())  # under another number's key
    assert contacts.contact_of("acme", CUSTOMER) == "crm-42"
    assert len(contacts) == 1
