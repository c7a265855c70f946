"""``/v1/contacts/{number}`` on a real nats-server: a link is written to KV ``contacts`` under the
number in E.164 (however typed), read and removed, seen by no other tenant; 422s name the field and
without the bus it is a 503 with its reason."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.api.db import Database
from shared import subjects
from shared.bus import Bus
from shared.records import ContactLink, contact_key
from tests.api.conftest import ApiHarness, harness

CUSTOMER = "+995555123456"


@pytest.fixture
async def api_on_bus(database: Database, bus: Bus) -> AsyncIterator[ApiHarness]:
    built = await harness(database, bus=bus)
    try:
        yield built
    finally:
        await built.close()


async def test_link_read_and_remove(api_on_bus: ApiHarness, bus: Bus) -> None:
    acme = await api_on_bus.tenant("Acme", "acme.example")
    globex = await api_on_bus.tenant("Globex", "globex.example")
    made = await acme.client.put("/v1/contacts/555123456", json={"contact_id": "crm-42 ნინო"})
    assert made.status_code == 200, made.text
    assert made.json() == {"number": CUSTOMER, "contact_id": "crm-42 ნინო"}
    entry = await (await bus.bucket(subjects.CONTACTS_KV)).get(contact_key(acme.tenant_id, CUSTOMER))
    assert ContactLink.model_validate_json(entry.value or b"").contact_id == "crm-42 ნინო"
    read = await acme.client.get(f"/v1/contacts/{CUSTOMER}")
    assert read.json() == {"number": CUSTOMER, "contact_id": "crm-42 ნინო"}
    assert (await globex.client.get(f"/v1/contacts/{CUSTOMER}")).status_code == 404
    assert (await acme.client.delete("/v1/contacts/0555123456")).status_code == 204
    gone = await acme.client.get(f"/v1/contacts/{CUSTOMER}")
    assert (gone.status_code, gone.json()["detail"]) == (404, f"{CUSTOMER} is linked to no contact")


async def test_refusals_name_the_field(api_on_bus: ApiHarness) -> None:
    acme = await api_on_bus.tenant("Acme", "acme.example")
    for number, body, loc in (
        ("abc", {"contact_id": "x"}, ["path", "number"]),
        ("100", {"contact_id": "x"}, ["path", "number"]),
        (CUSTOMER, {"contact_id": ""}, ["body", "contact_id"]),
        (CUSTOMER, {"contact_id": "a\nb"}, ["body", "contact_id"]),
        (CUSTOMER, {"contact_id": "x" * 129}, ["body", "contact_id"]),
    ):
        response = await acme.client.put(f"/v1/contacts/{number}", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc


async def test_without_the_bus_it_is_503(database: Database) -> None:
    api = await harness(database)
    try:
        acme = await api.tenant("Acme", "acme.example")
        response = await acme.client.put(f"/v1/contacts/{CUSTOMER}", json={"contact_id": "crm-1"})
        assert response.status_code == 503
        assert "contact links live in NATS KV" in response.text
    finally:
        await api.close()
