"""Trunks: CRUD with the seed's fields, write-only sealed passwords, validation that names the field,
and one default trunk per tenant, enforced by the database."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from services.api.db import Database, Trunk
from shared.records import TrunkTransport
from shared.sealing import unseal
from tests.api.conftest import SECRET_KEY, ApiHarness, Tenancy

#: The seed guide's example "SIP configuration", as an administrator would paste it.
SEED_TRUNK: dict[str, Any] = {
    "name": "My WebRTC SIP",
    "sip_server": "your-asterisk-server.com",
    "sip_port": 8089,
    "username": "your_extension",
    "password": "your_password",
    "realm": "your-asterisk-server.com",
    "stun_server": "stun:stun.l.google.com:19302",
    "is_active": True,
    "is_default": True,
}

FULL_TRUNK: dict[str, Any] = {
    "name": "Magti",
    "sip_server": "sip.magti.example",
    "sip_port": 5061,
    "transport": "tls",
    "username": "995322000000",
    "auth_username": "auth-995322000000",
    "password": "carrier-secret-1",
    "realm": "magti.example",
    "domain": "magti.example",
    "outbound_proxy": "sip:proxy.magti.example:5060;transport=tcp",
    "stun_servers": ["stun:stun.l.google.com:19302", "stun:stun1.l.google.com:19302"],
    "turn_server": "turn:turn.example.ge:3478?transport=udp",
    "turn_username": "echodesk",
    "turn_password": "turn-secret-2",
    "is_active": True,
    "max_concurrent_calls": 60,
    "default_region": "GE",
    "dids": ["0322 000 000", "+995322000001", "322000002"],
    "allowed_prefixes": ["+995", "+49"],
    "registers": True,
    "expires_s": 1800,
    "keepalive_s": 20,
}


async def create(tenant: Tenancy, **fields: Any) -> dict[str, Any]:
    body = {"name": "trunk", "sip_server": "sip.example.ge", **fields}
    response = await tenant.client.post("/v1/trunks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_read_update_delete(acme: Tenancy) -> None:
    created = await create(acme, **FULL_TRUNK)
    assert created["transport"] == "tls"
    assert created["dids"] == ["+995322000000", "+995322000001", "+995322000002"]
    assert created["stun_servers"] == FULL_TRUNK["stun_servers"]
    assert created["has_password"] is True
    assert created["has_turn_password"] is True
    assert created["is_default"] is True, "the first trunk is the default"
    assert created["published"] is False

    fetched = (await acme.client.get(f"/v1/trunks/{created['id']}")).json()
    assert fetched == created
    listed = (await acme.client.get("/v1/trunks")).json()
    assert [t["id"] for t in listed] == [created["id"]]

    response = await acme.client.patch(
        f"/v1/trunks/{created['id']}", json={"max_concurrent_calls": 10, "realm": None, "is_active": False}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["max_concurrent_calls"], updated["realm"], updated["is_active"]) == (10, None, False)
    assert updated["has_password"] is True, "a PATCH without password keeps it"
    assert updated["name"] == "Magti"

    assert (await acme.client.delete(f"/v1/trunks/{created['id']}")).status_code == 204
    assert (await acme.client.get(f"/v1/trunks/{created['id']}")).status_code == 404
    assert (await acme.client.delete(f"/v1/trunks/{created['id']}")).status_code == 404


async def test_the_seed_configuration_is_accepted(acme: Tenancy) -> None:
    created = await create(acme, **SEED_TRUNK)
    assert created["stun_servers"] == ["stun:stun.l.google.com:19302"]
    assert created["sip_port"] == 8089
    assert created["transport"] == "udp"
    assert created["is_default"] is True


async def test_passwords_are_sealed_in_the_database_and_never_returned(acme: Tenancy) -> None:
    created = await create(acme, **FULL_TRUNK)
    responses = [
        created,
        (await acme.client.get(f"/v1/trunks/{created['id']}")).json(),
        (await acme.client.get("/v1/trunks")).json()[0],
        (await acme.client.patch(f"/v1/trunks/{created['id']}", json={"name": "Magti 2"})).json(),
    ]
    for body in responses:
        assert "password" not in body
        assert "turn_password" not in body
        assert "carrier-secret-1" not in str(body)
        assert "turn-secret-2" not in str(body)

    async with acme.api.db.engine.connect() as connection:
        row = (await connection.execute(text("SELECT * FROM trunks"))).mappings().one()
    for column, value in row.items():
        assert "carrier-secret-1" not in str(value), column
        assert "turn-secret-2" not in str(value), column
    assert unseal(row["password_sealed"], SECRET_KEY) == "carrier-secret-1"
    assert unseal(row["turn_password_sealed"], SECRET_KEY) == "turn-secret-2"

    # A new password replaces the sealed one; null removes it.
    await acme.client.patch(f"/v1/trunks/{created['id']}", json={"password": "carrier-secret-3"})
    async with acme.api.db.engine.connect() as connection:
        sealed = (await connection.execute(text("SELECT password_sealed FROM trunks"))).scalar_one()
    assert unseal(sealed, SECRET_KEY) == "carrier-secret-3"
    cleared = (await acme.client.patch(f"/v1/trunks/{created['id']}", json={"password": None})).json()
    assert cleared["has_password"] is False


async def test_a_password_without_a_secret_key_is_refused_with_words(database: Database) -> None:
    from tests.api.conftest import harness

    api = await harness(database, secret_key=None)
    try:
        tenant = await api.tenant("Acme", "acme.example")
        response = await tenant.client.post(
            "/v1/trunks", json={"name": "t", "sip_server": "sip.example.ge", "password": "x"}
        )
        assert response.status_code == 503
        assert "ECHODESK_SECRET_KEY" in response.json()["detail"]
        # Without a password the trunk is fine.
        response = await tenant.client.post("/v1/trunks", json={"name": "t", "sip_server": "sip.example.ge"})
        assert response.status_code == 201
    finally:
        await api.close()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"dids": ["+995322000000", "555123456", "12ab"]}, "dids[2]", "letter"),
        ({"dids": ["+995322000000", "100"]}, "dids[1]", "extension"),
        ({"dids": ["+99532"]}, "dids[0]", ""),
        ({"sip_server": "sip://bad host"}, "sip_server", ""),
        ({"sip_port": 70000}, "sip_port", ""),
        ({"transport": "sctp"}, "transport", ""),
        ({"stun_servers": ["stun:ok.example", "http://not-stun"]}, "stun_servers[1]", ""),
        ({"turn_server": "stun:wrong.example"}, "turn_server", ""),
        ({"allowed_prefixes": ["995"]}, "allowed_prefixes[0]", ""),
        ({"default_region": "XX"}, "default_region", "region"),
        ({"expires_s": 5}, "expires_s", ""),
        ({"websocket_path": "ws"}, "websocket_path", ""),
        ({"outbound_proxy": "sip:proxy example"}, "outbound_proxy", ""),
        ({"turn_credential": "shared_secret"}, "turn_password", "shared_secret"),
        ({"colour": "blue"}, "colour", "not permitted"),
        ({"name": "a\x00b"}, "name", "NUL"),
        ({"dids": ["+995322000000\x00"]}, "dids", "NUL"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    acme: Tenancy, change: dict[str, Any], field: str, words: str
) -> None:
    response = await acme.client.post(
        "/v1/trunks", json={"name": "t", "sip_server": "sip.example.ge", **change}
    )
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert field in [e["field"] for e in errors], errors
    assert words.lower() in " ".join(e["msg"] for e in errors).lower()
    assert (await acme.client.get("/v1/trunks")).json() == []


async def test_patch_validates_like_create(acme: Tenancy) -> None:
    trunk = await create(acme, default_region="GE")
    response = await acme.client.patch(f"/v1/trunks/{trunk['id']}", json={"dids": ["555123456", "x"]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "dids[1]"
    response = await acme.client.patch(f"/v1/trunks/{trunk['id']}", json={"name": None})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "name"
    # DIDs in a PATCH are read in the trunk's region, or the one the same PATCH sets.
    response = await acme.client.patch(f"/v1/trunks/{trunk['id']}", json={"dids": ["555123456"]})
    assert response.json()["dids"] == ["+995555123456"]
    response = await acme.client.patch(
        f"/v1/trunks/{trunk['id']}", json={"dids": ["030 123456"], "default_region": "de"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["dids"] == ["+4930123456"]
    assert response.json()["default_region"] == "DE"


async def test_names_are_unique_per_tenant(acme: Tenancy, api: ApiHarness) -> None:
    await create(acme, name="Magti")
    response = await acme.client.post("/v1/trunks", json={"name": "Magti", "sip_server": "other.example"})
    assert response.status_code == 409
    assert response.json()["field"] == "name"
    other = await api.tenant("Other", "other.example")
    await create(other, name="Magti")


async def test_one_default_trunk_moves_with_set_default_and_survives_deletion(acme: Tenancy) -> None:
    first = await create(acme, name="first")
    second = await create(acme, name="second")
    third = await create(acme, name="third", is_default=True)
    assert (first["is_default"], second["is_default"], third["is_default"]) == (True, False, True)

    async def defaults() -> list[str]:
        return [t["name"] for t in (await acme.client.get("/v1/trunks")).json() if t["is_default"]]

    assert await defaults() == ["third"]
    response = await acme.client.post(f"/v1/trunks/{second['id']}/set-default")
    assert response.status_code == 200
    assert response.json()["is_default"] is True
    assert await defaults() == ["second"]

    response = await acme.client.patch(f"/v1/trunks/{second['id']}", json={"is_default": False})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "is_default"
    response = await acme.client.patch(f"/v1/trunks/{first['id']}", json={"is_default": True})
    assert response.json()["is_default"] is True
    assert await defaults() == ["first"]

    await acme.client.delete(f"/v1/trunks/{first['id']}")
    assert await defaults() == ["second"], "the oldest remaining trunk takes over the default"


async def test_racing_set_default_requests_leave_exactly_one_default(acme: Tenancy) -> None:
    trunks = [await create(acme, name=f"t{i}") for i in range(6)]
    responses = await asyncio.gather(
        *(acme.client.post(f"/v1/trunks/{t['id']}/set-default") for t in trunks for _ in range(3))
    )
    assert {r.status_code for r in responses} == {200}
    listed = (await acme.client.get("/v1/trunks")).json()
    assert sum(t["is_default"] for t in listed) == 1
    created = await asyncio.gather(
        *(
            acme.client.post(
                "/v1/trunks", json={"name": f"new{i}", "sip_server": "s.example", "is_default": True}
            )
            for i in range(5)
        )
    )
    assert {r.status_code for r in created} == {201}
    listed = (await acme.client.get("/v1/trunks")).json()
    assert sum(t["is_default"] for t in listed) == 1


async def test_the_database_refuses_a_second_default(acme: Tenancy, api: ApiHarness) -> None:
    await create(acme, name="first")
    row = {
        "id": "trk_direct",
        "tenant_id": acme.tenant_id,
        "name": "direct",
        "sip_server": "sip.example.ge",
        "transport": TrunkTransport.UDP,
        "username": "",
        "stun_servers": [],
        "turn_credential": "password",
        "is_active": True,
        "is_default": True,
        "max_concurrent_calls": 1,
        "default_region": "GE",
        "dids": [],
        "allowed_prefixes": [],
        "registers": False,
        "expires_s": 3600,
        "keepalive_s": 30.0,
        "version": 1,
    }
    with pytest.raises(IntegrityError):
        async with api.db.engine.begin() as connection:
            await connection.execute(insert(Trunk).values(**row))
    # Another tenant's default, and non-default rows, are fine.
    async with api.db.engine.begin() as connection:
        await connection.execute(insert(Trunk).values(**{**row, "is_default": False}))
    async with api.db.sessions() as session:
        defaults = (await session.scalars(select(Trunk.name).where(Trunk.is_default))).all()
    assert defaults == ["first"]


async def test_ids_that_cannot_exist_are_404(acme: Tenancy) -> None:
    for odd in ("%00", "x" * 300, "trk_'; DROP TABLE trunks;--", "trk_0123456789abcdef0123"):
        for response in (
            await acme.client.get(f"/v1/trunks/{odd}"),
            await acme.client.patch(f"/v1/trunks/{odd}", json={"name": "n"}),
            await acme.client.delete(f"/v1/trunks/{odd}"),
            await acme.client.get(f"/v1/agents/{odd}"),
            await acme.client.get(f"/v1/agents/{odd}/webrtc-config"),
            await acme.client.delete(f"/v1/api-keys/{odd}"),
        ):
            assert response.status_code == 404, (odd, response.request.url, response.text)
