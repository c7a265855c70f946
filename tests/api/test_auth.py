"""API keys: required, stored hashed, scoped, revocable; admins manage them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from services.api.keys import hash_token
from tests.api.conftest import ApiHarness, Tenancy


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "Bearer edk_0123456789abcdef0123_wrong-secret",
    ],
)
async def test_no_valid_key_is_401(api: ApiHarness, acme: Tenancy, header: str | None) -> None:
    client = api.client(None)
    headers = {"Authorization": header} if header is not None else {}
    for path in ("/v1/trunks", "/v1/agents", "/v1/tenant", "/v1/api-keys", "/v1/numbers/normalize?number=1"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_wrong_secret_for_a_real_key_id_is_401(acme: Tenancy) -> None:
    ident = acme.token.split("_")[1]
    forged = acme.as_key(f"edk_{ident}_{'A' * 43}")
    assert (await forged.get("/v1/trunks")).status_code == 401


async def test_health_and_the_status_page_need_no_key(api: ApiHarness) -> None:
    client = api.client(None)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/v1/services")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200


async def test_keys_are_stored_hashed(acme: Tenancy) -> None:
    created = (await acme.client.post("/v1/api-keys", json={"name": "crm", "scopes": ["write"]})).json()
    assert created["key"].startswith("edk_")
    assert created["prefix"].endswith("_...")
    async with acme.api.db.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM api_keys"))).mappings().all()
    stored = " ".join(str(value) for row in rows for value in row.values())
    for token in (acme.token, created["key"]):
        secret = token.split("_", 2)[2]
        assert secret not in stored
        assert hash_token(token) in stored
    listed = (await acme.client.get("/v1/api-keys")).json()
    assert all("key" not in k for k in listed)
    assert {k["name"] for k in listed} == {"admin", "crm"}


async def test_scopes_limit_what_a_key_may_do(acme: Tenancy) -> None:
    reader = acme.as_key(
        (await acme.client.post("/v1/api-keys", json={"name": "r", "scopes": ["read"]})).json()["key"]
    )
    writer = acme.as_key(
        (await acme.client.post("/v1/api-keys", json={"name": "w", "scopes": ["write"]})).json()["key"]
    )
    assert (await reader.get("/v1/trunks")).status_code == 200
    response = await reader.post("/v1/trunks", json={"name": "t", "sip_server": "s.example"})
    assert response.status_code == 403
    assert "write" in response.json()["detail"]
    assert (await writer.post("/v1/trunks", json={"name": "t", "sip_server": "s.example"})).status_code == 201
    assert (await writer.get("/v1/api-keys")).status_code == 403
    assert (await writer.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]})).status_code == 403


async def test_revoked_and_expired_keys_stop_working(acme: Tenancy) -> None:
    created = (await acme.client.post("/v1/api-keys", json={"name": "temp", "scopes": ["read"]})).json()
    temp = acme.as_key(created["key"])
    assert (await temp.get("/v1/tenant")).status_code == 200
    assert (await acme.client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
    response = await temp.get("/v1/tenant")
    assert (response.status_code, response.json()["detail"]) == (401, "API key revoked")
    listed = {k["id"]: k for k in (await acme.client.get("/v1/api-keys")).json()}
    assert listed[created["id"]]["active"] is False
    assert listed[created["id"]]["revoked_at"]

    soon = datetime.now(UTC) + timedelta(hours=1)
    expiring = (
        await acme.client.post(
            "/v1/api-keys", json={"name": "exp", "scopes": ["read"], "expires_at": soon.isoformat()}
        )
    ).json()
    async with acme.api.db.engine.begin() as connection:
        await connection.execute(
            text("UPDATE api_keys SET expires_at = :past WHERE id = :id"),
            {"past": datetime.now(UTC) - timedelta(seconds=1), "id": expiring["id"]},
        )
    response = await acme.as_key(expiring["key"]).get("/v1/tenant")
    assert (response.status_code, response.json()["detail"]) == (401, "API key expired")


async def test_the_last_admin_key_cannot_be_revoked(acme: Tenancy) -> None:
    (admin,) = (await acme.client.get("/v1/api-keys")).json()
    response = await acme.client.delete(f"/v1/api-keys/{admin['id']}")
    assert response.status_code == 409
    second = (await acme.client.post("/v1/api-keys", json={"name": "admin 2", "scopes": ["admin"]})).json()
    assert (await acme.client.delete(f"/v1/api-keys/{admin['id']}")).status_code == 204
    assert (await acme.client.get("/v1/tenant")).status_code == 401
    assert (await acme.as_key(second["key"]).get("/v1/api-keys")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["root"]}, "scopes[0]"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x", "scopes": ["read"], "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ],
)
async def test_bad_key_requests_are_422(acme: Tenancy, body: dict[str, object], field: str) -> None:
    response = await acme.client.post("/v1/api-keys", json=body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["detail"]]
