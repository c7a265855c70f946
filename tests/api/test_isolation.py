"""Tenant isolation: another tenant's trunks, agents and keys are invisible; their ids give 404
(not 403, which would confirm they exist)."""

from __future__ import annotations

from tests.api.conftest import ApiHarness, Tenancy


async def test_tenant_b_never_sees_tenant_a(acme: Tenancy, api: ApiHarness) -> None:
    globex = await api.tenant("Globex", "globex.example")
    trunk = (
        await acme.client.post(
            "/v1/trunks",
            json={"name": "A's carrier", "sip_server": "sip.a.example", "stun_servers": ["stun:a.example"]},
        )
    ).json()
    agent = (await acme.client.post("/v1/agents", json={"extension": "100", "password": "password-a"})).json()
    key = (await acme.client.post("/v1/api-keys", json={"name": "A's reader", "scopes": ["read"]})).json()
    # B has an agent of its own with the same extension: no clash across tenants.
    own = (await globex.client.post("/v1/agents", json={"extension": "100", "password": "password-b"})).json()

    assert (await globex.client.get("/v1/trunks")).json() == []
    assert [a["id"] for a in (await globex.client.get("/v1/agents")).json()] == [own["id"]]
    assert key["id"] not in [k["id"] for k in (await globex.client.get("/v1/api-keys")).json()]

    b = globex.client
    attempts = [
        await b.get(f"/v1/trunks/{trunk['id']}"),
        await b.patch(f"/v1/trunks/{trunk['id']}", json={"name": "mine now"}),
        await b.post(f"/v1/trunks/{trunk['id']}/set-default"),
        await b.delete(f"/v1/trunks/{trunk['id']}"),
        await b.get(f"/v1/agents/{agent['id']}"),
        await b.get(f"/v1/agents/{agent['id']}/webrtc-config"),
        await b.patch(f"/v1/agents/{agent['id']}", json={"password": "taken-over"}),
        await b.delete(f"/v1/agents/{agent['id']}"),
        await b.delete(f"/v1/api-keys/{key['id']}"),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts)

    # A's things are untouched, and B's webrtc-config never carries A's ICE servers.
    assert (await acme.client.get(f"/v1/trunks/{trunk['id']}")).json()["name"] == "A's carrier"
    assert (await acme.client.get(f"/v1/agents/{agent['id']}")).status_code == 200
    config = (await b.get(f"/v1/agents/{own['id']}/webrtc-config")).json()
    assert config["ice_servers"] == []
    assert config["uri"] == "sip:100@globex.example"
    assert (await acme.client.get("/v1/tenant")).json()["sip_domain"] == "acme.example"
    assert (await b.get("/v1/tenant")).json()["sip_domain"] == "globex.example"
