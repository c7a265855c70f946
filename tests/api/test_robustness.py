"""No input makes the api fail with a 500: every field of every body gets values that have broken
APIs before (NUL, lone surrogates, NaN, huge numbers, wrong types), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.conftest import Tenancy

NASTY: list[Any] = [
    None,
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "😀" * 100,
    "x" * 100_000,
    " ",
    "'; DROP TABLE trunks;--",
    0,
    -1,
    2**63,
    -(2**63) - 1,
    1e308,
    float("nan"),
    float("inf"),
    True,
    [],
    ["\ud800"],
    [None],
    {},
    {"nested": "\x00"},
]

TRUNK = {
    "name": "t",
    "sip_server": "sip.example.ge",
    "sip_port": 5060,
    "transport": "udp",
    "websocket_path": "/ws",
    "username": "u",
    "auth_username": "a",
    "password": "p",
    "realm": "r",
    "domain": "d.example",
    "outbound_proxy": "proxy.example",
    "stun_servers": ["stun:s.example"],
    "turn_server": "turn:t.example",
    "turn_username": "tu",
    "turn_password": "tp",
    "turn_credential": "password",
    "is_active": True,
    "is_default": True,
    "max_concurrent_calls": 3,
    "default_region": "GE",
    "dids": ["+995322000000"],
    "allowed_prefixes": ["+995"],
    "registers": True,
    "expires_s": 600,
    "keepalive_s": 30,
}
AGENT = {
    "extension": "100",
    "sip_username": "u100",
    "password": "long-enough",
    "display_name": "d",
    "ring_groups": ["g"],
    "enabled": True,
    "max_concurrent_calls": 2,
}
KEY = {"name": "k", "scopes": ["read"], "expires_at": "2099-01-01T00:00:00Z"}
RAW = [b"", b"{", b"[]", b"null", b'"text"', b"\xff\xfe", b'{"name": NaN}', b"{" * 10_000]


def body(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


async def no_500(client: httpx.AsyncClient, method: str, path: str, content: bytes) -> None:
    response = await client.request(
        method, path, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, (method, path, content[:200], response.text[:300])


def unique(valid: dict[str, Any], n: int) -> dict[str, Any]:
    """The valid body with its unique fields made unique, so each request gets past conflicts to the
    database with the one nasty value it carries."""
    names = {"name": f"t{n}", "extension": str(1000 + n), "sip_username": f"u{n}"}
    return {**valid, **{k: v for k, v in names.items() if k in valid}}


async def test_no_body_makes_a_500(acme: Tenancy) -> None:
    c = acme.client
    trunk = (await c.post("/v1/trunks", json={"name": "base", "sip_server": "base.example"})).json()["id"]
    agent = (await c.post("/v1/agents", json={"extension": "99", "password": "long-enough"})).json()["id"]
    targets = [
        ("POST", "/v1/trunks", TRUNK),
        ("PATCH", f"/v1/trunks/{trunk}", TRUNK),
        ("POST", "/v1/agents", AGENT),
        ("PATCH", f"/v1/agents/{agent}", AGENT),
        ("POST", "/v1/api-keys", KEY),
    ]
    counter = iter(range(1_000_000))
    for method, path, valid in targets:
        # The base body itself is accepted: what follows changes one thing at a time.
        response = await c.request(method, path, json=unique(valid, next(counter)))
        assert response.status_code in (200, 201), response.text
        for raw in RAW:
            await no_500(c, method, path, raw)
        for field in valid:
            for value in NASTY:
                await no_500(c, method, path, body({**unique(valid, next(counter)), field: value}))
            without = unique(valid, next(counter))
            del without[field]
            await no_500(c, method, path, body(without))


async def test_no_query_or_path_makes_a_500(acme: Tenancy) -> None:
    c = acme.client
    for raw in ("%00", "%ED%A0%80", "%FF", "+", "%2B995", "1" * 200, "%F0%9F%98%80"):
        for query in (f"number={raw}", f"number=555123456&region={raw}", f"number={raw}&region=GE"):
            response = await c.get(f"/v1/numbers/normalize?{query}")
            assert response.status_code in (200, 422), (query, response.text)
        for path in (f"/v1/trunks/{raw}", f"/v1/agents/{raw}/webrtc-config", f"/v1/api-keys/{raw}"):
            response = await c.request("DELETE" if "api-keys" in path else "GET", path)
            assert response.status_code in (404, 405), (path, response.text)
