"""Agents: CRUD, only digest hashes stored, and the webrtc-config a softphone starts from."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from shared.records import digest_ha1
from tests.api.conftest import ApiHarness, Tenancy

PASSWORD = "agent-password-100"


async def create(tenant: Tenancy, **fields: Any) -> dict[str, Any]:
    body = {"extension": "100", "password": PASSWORD, **fields}
    response = await tenant.client.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_read_update_delete(acme: Tenancy) -> None:
    created = await create(acme, display_name="Nino", ring_groups=["support", "sales", "support"])
    assert created["sip_username"] == "100", "the extension is the SIP username unless one is given"
    assert created["uri"] == "sip:100@acme.example"
    assert created["ring_groups"] == ["support", "sales"]
    assert (created["enabled"], created["max_concurrent_calls"]) == (True, 2)
    assert (await acme.client.get(f"/v1/agents/{created['id']}")).json() == created

    second = await create(acme, extension="101", sip_username="nino.k")
    assert second["uri"] == "sip:nino.k@acme.example"
    assert [a["extension"] for a in (await acme.client.get("/v1/agents")).json()] == ["100", "101"]

    response = await acme.client.patch(
        f"/v1/agents/{created['id']}", json={"display_name": None, "enabled": False, "extension": "102"}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["display_name"], response.json()["enabled"], response.json()["extension"]) == (
        None,
        False,
        "102",
    )
    assert (await acme.client.delete(f"/v1/agents/{created['id']}")).status_code == 204
    assert (await acme.client.get(f"/v1/agents/{created['id']}")).status_code == 404


async def test_only_digest_hashes_are_stored_and_no_password_is_returned(acme: Tenancy) -> None:
    created = await create(acme)
    bodies = [
        created,
        (await acme.client.get(f"/v1/agents/{created['id']}")).json(),
        (await acme.client.get("/v1/agents")).json()[0],
        (await acme.client.get(f"/v1/agents/{created['id']}/webrtc-config")).json(),
    ]
    for body in bodies:
        assert PASSWORD not in str(body)
        assert "password" not in body
        assert "ha1_md5" not in body
    async with acme.api.db.engine.connect() as connection:
        row = (await connection.execute(text("SELECT * FROM agents"))).mappings().one()
    assert all(PASSWORD not in str(value) for value in row.values())
    assert row["ha1_md5"] == digest_ha1("100", "acme.example", PASSWORD, "MD5")
    assert row["ha1_sha256"] == digest_ha1("100", "acme.example", PASSWORD, "SHA-256")


async def test_a_new_sip_username_needs_the_password_again(acme: Tenancy) -> None:
    agent = await create(acme)
    response = await acme.client.patch(f"/v1/agents/{agent['id']}", json={"sip_username": "nino"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "password"
    response = await acme.client.patch(
        f"/v1/agents/{agent['id']}", json={"sip_username": "nino", "password": "another-password"}
    )
    assert response.status_code == 200
    async with acme.api.db.engine.connect() as connection:
        ha1 = (await connection.execute(text("SELECT ha1_md5 FROM agents"))).scalar_one()
    assert ha1 == digest_ha1("nino", "acme.example", "another-password", "MD5")


async def test_extensions_and_usernames_are_unique_per_tenant(acme: Tenancy, api: ApiHarness) -> None:
    await create(acme)
    response = await acme.client.post("/v1/agents", json={"extension": "100", "password": PASSWORD})
    assert (response.status_code, response.json()["field"]) == (409, "extension")
    response = await acme.client.post(
        "/v1/agents", json={"extension": "101", "sip_username": "100", "password": PASSWORD}
    )
    assert (response.status_code, response.json()["field"]) == (409, "sip_username")
    other = await api.tenant("Other", "other.example")
    await create(other)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"extension": "1", "password": PASSWORD}, "extension"),
        ({"extension": "abc", "password": PASSWORD}, "extension"),
        ({"extension": "100", "password": "short"}, "password"),
        ({"extension": "100"}, "password"),
        ({"extension": "100", "password": PASSWORD, "sip_username": "no spaces"}, "sip_username"),
        ({"extension": "100", "password": PASSWORD, "ring_groups": ["ok", "not ok"]}, "ring_groups[1]"),
        ({"extension": "100", "password": PASSWORD, "max_concurrent_calls": 101}, "max_concurrent_calls"),
        ({"extension": "100", "password": PASSWORD, "enabled": "perhaps"}, "enabled"),
    ],
)
async def test_bad_input_is_422_naming_the_field(acme: Tenancy, body: dict[str, Any], field: str) -> None:
    response = await acme.client.post("/v1/agents", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["detail"]]


async def test_webrtc_config_has_what_sip_js_needs(acme: Tenancy) -> None:
    agent = await create(acme, display_name="Nino")
    config = (await acme.client.get(f"/v1/agents/{agent['id']}/webrtc-config")).json()
    assert config == {
        "agent_id": agent["id"],
        "ws_server": "wss://voice.example:8089/ws",
        "uri": "sip:100@acme.example",
        "authorization_username": "100",
        "realm": "acme.example",
        "display_name": "Nino",
        "extension": "100",
        "ice_servers": [],
        "ice_servers_expire_at": None,
        "trunk_id": None,
    }

    trunk = await acme.client.post(
        "/v1/trunks",
        json={
            "name": "Magti",
            "sip_server": "sip.magti.example",
            "stun_servers": ["stun:stun.l.google.com:19302", "stun:stun1.l.google.com:19302"],
            "turn_server": "turn:turn.example.ge:3478",
            "turn_username": "echodesk",
            "turn_password": "turn-long-term",
        },
    )
    config = (await acme.client.get(f"/v1/agents/{agent['id']}/webrtc-config")).json()
    assert config["trunk_id"] == trunk.json()["id"]
    assert config["ice_servers"] == [
        {"urls": ["stun:stun.l.google.com:19302"], "username": None, "credential": None},
        {"urls": ["stun:stun1.l.google.com:19302"], "username": None, "credential": None},
        {"urls": ["turn:turn.example.ge:3478"], "username": "echodesk", "credential": "turn-long-term"},
    ]


async def test_a_shared_turn_secret_gives_short_lived_credentials(acme: Tenancy) -> None:
    agent = await create(acme)
    await acme.client.post(
        "/v1/trunks",
        json={
            "name": "Magti",
            "sip_server": "sip.magti.example",
            "turn_server": "turns:turn.example.ge:5349",
            "turn_credential": "shared_secret",
            "turn_password": "coturn-static-auth-secret",
        },
    )
    config = (await acme.client.get(f"/v1/agents/{agent['id']}/webrtc-config")).json()
    (turn,) = config["ice_servers"]
    expiry, _, user = turn["username"].partition(":")
    assert user == agent["id"]
    assert abs(int(expiry) - (datetime.now(UTC).timestamp() + 86400)) < 60
    expected = hmac.new(b"coturn-static-auth-secret", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(expected).decode()
    assert "coturn-static-auth-secret" not in str(config)
    assert datetime.fromisoformat(config["ice_servers_expire_at"]).timestamp() == int(expiry)


async def test_a_disabled_agent_gets_no_webrtc_config(acme: Tenancy) -> None:
    agent = await create(acme, enabled=False)
    response = await acme.client.get(f"/v1/agents/{agent['id']}/webrtc-config")
    assert response.status_code == 409
    assert "disabled" in response.json()["detail"]


async def test_a_422_never_echoes_a_password(acme: Tenancy) -> None:
    for body in (
        {"extension": "100", "password": "short"},
        {"extension": "x", "password": "long-enough-secret"},
        {"password": "long-enough-secret"},
    ):
        response = await acme.client.post("/v1/agents", json=body)
        assert response.status_code == 422
        assert body["password"] not in response.text
    response = await acme.client.post(
        "/v1/trunks", json={"name": "t", "sip_server": "bad host", "password": "carrier-secret"}
    )
    assert response.status_code == 422
    assert "carrier-secret" not in response.text
