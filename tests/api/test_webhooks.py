"""Webhooks end to end: events on a real nats-server, the dispatcher's own durable consumers, and a
real HTTP receiver on loopback that checks every signature."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.api.db import Database, WebhookSubscription
from services.api.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDispatcher,
    WebhookPolicy,
    signature,
    verify,
)
from shared.bus import Bus
from shared.sealing import unseal
from tests.api.conftest import SECRET_KEY, ApiHarness, Tenancy, harness
from tests.api.eventing import eventually, publish
from tests.api.test_call_log import a_call
from tests.support.http_receiver import HttpReceiver, Received
from tests.support.nats import NatsServer

SECRET = "whsec_test-secret-0123456789"
FAST = WebhookPolicy(
    timeout_s=5,
    max_attempts=4,
    retry_base_s=0.05,
    retry_max_s=0.4,
    pause_after_failures=50,
    allow_private_targets=True,  # the receivers are on loopback
)


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    server = await HttpReceiver().start()
    yield server
    await server.stop()


class Hooks:
    """The api with a running dispatcher over a real bus."""

    def __init__(self, database: Database, bus: Bus) -> None:
        self.database = database
        self.bus = bus
        self.dispatchers: list[WebhookDispatcher] = []
        self.api: ApiHarness | None = None

    async def start(self, policy: WebhookPolicy = FAST) -> WebhookDispatcher:
        dispatcher = WebhookDispatcher(self.database, SECRET_KEY, policy)
        await dispatcher.start(self.bus, max_deliver=2)
        self.dispatchers.append(dispatcher)
        return dispatcher

    async def app(self, dispatcher: WebhookDispatcher) -> ApiHarness:
        self.api = await harness(self.database, webhooks=dispatcher, bus=self.bus)
        return self.api

    async def close(self) -> None:
        for dispatcher in self.dispatchers:
            await dispatcher.stop()
        if self.api is not None:
            await self.api.close()


@pytest.fixture
async def hooks(database: Database, bus: Bus) -> AsyncIterator[Hooks]:
    built = Hooks(database, bus)
    yield built
    await built.close()


async def subscribe(tenancy: Tenancy, url: str, **fields: Any) -> dict[str, Any]:
    response = await tenancy.client.post("/v1/webhooks", json={"url": url, "secret": SECRET, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def check_signed(request: Received, secret: str = SECRET) -> None:
    timestamp = request.headers[TIMESTAMP_HEADER.lower()]
    signed = request.headers[SIGNATURE_HEADER.lower()]
    assert verify(secret, timestamp, signed, request.body, now=time.time())
    assert not verify(secret, timestamp, signed, request.body + b" ", now=time.time())


async def test_events_are_posted_signed_and_logged(hooks: Hooks, receiver: HttpReceiver) -> None:
    api = await hooks.app(await hooks.start())
    acme = await api.tenant("Acme", "acme.example")
    every = await subscribe(acme, receiver.url)
    await subscribe(acme, receiver.url + "/ends", event_types=["call.ended"])
    assert "secret" in every
    assert "secret" not in (await acme.client.get(f"/v1/webhooks/{every['id']}")).json()

    events = a_call(acme.tenant_id, "call-w", start=datetime.now(UTC))
    await publish(hooks.bus, *events)
    requests = await receiver.wait_for(len(events) + 1)

    for request in requests:
        check_signed(request)
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/json"
    to_every = [r for r in requests if r.path == "/hooks"]
    to_ends = [r for r in requests if r.path == "/hooks/ends"]
    assert sorted(json.loads(r.body)["id"] for r in to_every) == sorted(str(e.id) for e in events)
    assert [json.loads(r.body)["type"] for r in to_ends] == ["call.ended"]
    ended = json.loads(to_ends[0].body)
    assert ended["data"]["sip_status"] == 200
    assert to_ends[0].headers["echodesk-event-type"] == "call.ended"
    assert to_ends[0].headers["echodesk-event-id"] == ended["id"]

    async def logged() -> list[dict[str, Any]] | None:
        page = (await acme.client.get(f"/v1/webhooks/{every['id']}/deliveries")).json()
        items: list[dict[str, Any]] = page["items"]
        return items if len(items) == len(events) and all(d["status"] == "delivered" for d in items) else None

    log = await eventually(logged, "the delivery log never showed every delivery delivered")
    assert {d["attempts"] for d in log} == {1}
    assert {d["last_status_code"] for d in log} == {200}


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    import hashlib
    import hmac

    body = b'{"type":"call.ended"}'
    expected = hmac.new(b"k" * 16, b"1764000000." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, 1764000000, body) == f"v1={expected}"
    # A receiver refuses a replay of an old request, even correctly signed.
    assert verify("k" * 16, "1764000000", f"v1={expected}", body, now=1764000000 + 100)
    assert not verify("k" * 16, "1764000000", f"v1={expected}", body, now=1764000000 + 301)
    assert not verify("k" * 16, "soon", f"v1={expected}", body, now=1764000000)


async def test_failures_are_retried_with_backoff(hooks: Hooks, receiver: HttpReceiver) -> None:
    api = await hooks.app(await hooks.start())
    acme = await api.tenant("Acme", "acme.example")
    sub = await subscribe(acme, receiver.url, event_types=["call.ended"])
    receiver.status = 500
    await publish(hooks.bus, *a_call(acme.tenant_id, "call-retry", start=datetime.now(UTC)))
    await receiver.wait_for(2)
    receiver.status = 204
    requests = await receiver.wait_for(3)

    assert [r.headers["echodesk-attempt"] for r in requests] == ["1", "2", "3"]
    assert len({r.headers["echodesk-delivery-id"] for r in requests}) == 1
    # Each retry waits at least its backoff (0.05 s, then 0.1 s): never sooner.
    assert requests[1].at - requests[0].at >= 0.05 - 0.01
    assert requests[2].at - requests[1].at >= 0.1 - 0.01
    for request in requests:
        check_signed(request)

    async def delivered() -> dict[str, Any] | None:
        items = (await acme.client.get(f"/v1/webhooks/{sub['id']}/deliveries")).json()["items"]
        return items[0] if items and items[0]["status"] == "delivered" else None

    delivery = await eventually(delivered, "never delivered")
    assert (delivery["attempts"], delivery["last_status_code"], delivery["last_error"]) == (3, 204, None)


async def test_a_delivery_that_never_succeeds_ends_failed(hooks: Hooks, receiver: HttpReceiver) -> None:
    api = await hooks.app(await hooks.start())
    acme = await api.tenant("Acme", "acme.example")
    sub = await subscribe(acme, receiver.url, event_types=["call.ended"])
    receiver.status = 410
    await publish(hooks.bus, *a_call(acme.tenant_id, "call-gone", start=datetime.now(UTC)))

    async def failed() -> dict[str, Any] | None:
        items = (
            await acme.client.get(f"/v1/webhooks/{sub['id']}/deliveries", params={"status": "failed"})
        ).json()
        return items["items"][0] if items["items"] else None

    delivery = await eventually(failed, "never gave up")
    assert delivery["attempts"] == FAST.max_attempts
    assert delivery["next_attempt_at"] is None
    assert "HTTP 410" in delivery["last_error"]
    assert len(receiver.requests) == FAST.max_attempts


async def test_a_subscription_that_keeps_failing_is_paused_and_says_so(
    hooks: Hooks, receiver: HttpReceiver
) -> None:
    policy = WebhookPolicy(
        timeout_s=5,
        max_attempts=10,
        retry_base_s=0.05,
        retry_max_s=0.1,
        pause_after_failures=3,
        allow_private_targets=True,
    )
    api = await hooks.app(await hooks.start(policy))
    acme = await api.tenant("Acme", "acme.example")
    sub = await subscribe(acme, receiver.url, event_types=["call.ended"])
    receiver.status = 503
    await publish(hooks.bus, *a_call(acme.tenant_id, "call-p", start=datetime.now(UTC)))

    async def paused() -> dict[str, Any] | None:
        body: dict[str, Any] = (await acme.client.get(f"/v1/webhooks/{sub['id']}")).json()
        return body if body["status"] == "paused" else None

    state = await eventually(paused, "never paused")
    assert "3 failed delivery attempts in a row" in state["paused_reason"]
    assert "HTTP 503" in state["paused_reason"]
    assert state["pending_deliveries"] == 1
    assert len(receiver.requests) == 3

    # While paused, new events wait; resuming delivers them all.
    await publish(hooks.bus, *a_call(acme.tenant_id, "call-p2", start=datetime.now(UTC)))
    receiver.status = 200

    async def queued() -> dict[str, Any] | None:
        body: dict[str, Any] = (await acme.client.get(f"/v1/webhooks/{sub['id']}")).json()
        return body if body["pending_deliveries"] == 2 else None

    await eventually(queued, "the second event was not queued")
    assert len(receiver.requests) == 3
    resumed = (await acme.client.post(f"/v1/webhooks/{sub['id']}/resume")).json()
    assert (resumed["status"], resumed["paused_reason"]) == ("active", None)
    requests = await receiver.wait_for(5)
    assert sorted(json.loads(r.body)["call_id"] for r in requests[3:]) == ["call-p", "call-p2"]


async def test_events_published_while_no_dispatcher_runs_are_delivered_after(
    hooks: Hooks, receiver: HttpReceiver, database: Database, nats_server: NatsServer
) -> None:
    api = await harness(database)
    acme = await api.tenant("Acme", "acme.example")
    await subscribe(acme, receiver.url, event_types=["call.created", "call.ended"])
    # A first api creates the durable consumers, then goes away (its connection with it).
    elsewhere = await Bus.connect(nats_server.url, name="first-api", timeout=10)
    first = WebhookDispatcher(database, SECRET_KEY, FAST)
    await first.start(elsewhere)
    await first.stop()
    await elsewhere.close()

    await publish(hooks.bus, *a_call(acme.tenant_id, "call-down", start=datetime.now(UTC)))
    await hooks.start()
    requests = await receiver.wait_for(2)
    assert sorted(json.loads(r.body)["type"] for r in requests) == ["call.created", "call.ended"]
    await api.close()


async def test_the_secret_is_sealed_at_rest(hooks: Hooks, database: Database) -> None:
    api = await harness(database)
    acme = await api.tenant("Acme", "acme.example")
    made = await subscribe(acme, "https://helpdesk.example/hooks")
    generated = (await acme.client.post("/v1/webhooks", json={"url": "https://helpdesk.example/2"})).json()
    assert generated["secret"].startswith("whsec_")
    async with database.sessions() as session:
        rows = {s.id: s.secret_sealed for s in await session.scalars(select(WebhookSubscription))}
    assert SECRET not in rows[made["id"]]
    assert unseal(rows[made["id"]], SECRET_KEY) == SECRET
    assert unseal(rows[generated["id"]], SECRET_KEY) == generated["secret"]
    rotated = (await acme.client.post(f"/v1/webhooks/{made['id']}/rotate-secret")).json()
    assert rotated["secret"] != SECRET
    listed = (await acme.client.get("/v1/webhooks")).text
    assert SECRET not in listed
    assert rotated["secret"] not in listed
    await api.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://helpdesk.example/x"}, "url"),
        ({"url": "https://user:pw@helpdesk.example/x"}, "url"),
        ({"url": "https://helpdesk.example", "event_types": ["call.exploded"]}, "event_types[0]"),
        ({"url": "https://helpdesk.example", "secret": "short"}, "secret"),
        ({"url": "https://helpdesk.example", "colour": "red"}, "colour"),
    ],
)
async def test_bad_subscriptions_are_422_naming_the_field(
    acme: Tenancy, body: dict[str, Any], field: str
) -> None:
    response = await acme.client.post("/v1/webhooks", json=body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["detail"]] == [field]
    assert "short" not in response.text


async def test_another_tenants_webhooks_are_invisible(hooks: Hooks, receiver: HttpReceiver) -> None:
    api = await hooks.app(await hooks.start())
    acme = await api.tenant("Acme", "acme.example")
    globex = await api.tenant("Globex", "globex.example")
    theirs = await subscribe(acme, receiver.url + "/acme")
    await subscribe(globex, receiver.url + "/globex", event_types=["call.ended"])
    b = globex.client
    attempts = [
        await b.get(f"/v1/webhooks/{theirs['id']}"),
        await b.patch(f"/v1/webhooks/{theirs['id']}", json={"url": "https://evil.example"}),
        await b.post(f"/v1/webhooks/{theirs['id']}/pause"),
        await b.post(f"/v1/webhooks/{theirs['id']}/resume"),
        await b.post(f"/v1/webhooks/{theirs['id']}/rotate-secret"),
        await b.get(f"/v1/webhooks/{theirs['id']}/deliveries"),
        await b.delete(f"/v1/webhooks/{theirs['id']}"),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert [w["url"] for w in (await b.get("/v1/webhooks")).json()] == [receiver.url + "/globex"]

    events = a_call(acme.tenant_id, "call-iso", start=datetime.now(UTC) - timedelta(seconds=5))
    await publish(hooks.bus, *events, *a_call(globex.tenant_id, "call-g", start=datetime.now(UTC)))
    requests = await receiver.wait_for(len(events) + 1)
    assert {json.loads(r.body)["tenant_id"] for r in requests if r.path == "/hooks/globex"} == {
        globex.tenant_id
    }
    assert {json.loads(r.body)["tenant_id"] for r in requests if r.path == "/hooks/acme"} == {acme.tenant_id}
