"""The SSRF guard on webhook URLs: loopback, private, link-local, multicast and metadata addresses
are refused when a URL is saved (422 naming ``url``) and again when a delivery is sent (DNS
rebinding), unless private targets are allowed; both ways, with a real receiver on loopback."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.api.db import Database
from services.api.webhook_targets import IPAddress, TargetRefused, check_url, refusal
from services.api.webhooks import WebhookDispatcher, WebhookPolicy
from shared.bus import Bus
from tests.api.conftest import SECRET_KEY, harness
from tests.api.eventing import eventually, publish
from tests.api.test_call_log import a_call
from tests.support.http_receiver import HttpReceiver


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "a cloud metadata service"),
        ("100.100.100.200", "a cloud metadata service"),
        ("fd00:ec2::254", "a cloud metadata service"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified (this host)"),
        ("::", "unspecified (this host)"),
        ("100.64.0.1", "not a public address"),
        ("192.0.2.10", "private"),
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_which_addresses_are_refused(address: str, why: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == why


def _resolving(*answers: list[str]) -> Any:
    """A resolver answering each lookup with the next list (a rebinding name changes its answer)."""
    queue = [[ipaddress.ip_address(a) for a in answer] for answer in answers]

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return resolve


async def test_every_address_of_a_name_must_be_public() -> None:
    target = await check_url(
        "https://hooks.example:8443/x", allow_private=False, resolver=_resolving(["93.184.215.14"])
    )
    assert (target.host, target.port, [str(a) for a in target.addresses]) == (
        "hooks.example",
        8443,
        ["93.184.215.14"],
    )
    with pytest.raises(TargetRefused, match=r"hooks.example resolves to 10.0.0.7, private"):
        await check_url(
            "https://hooks.example/x", allow_private=False, resolver=_resolving(["93.184.215.14", "10.0.0.7"])
        )
    allowed = await check_url("http://hooks.example/x", allow_private=True, resolver=_resolving(["10.0.0.7"]))
    assert allowed.port == 80

    async def broken(host: str, port: int) -> list[IPAddress]:
        raise OSError("Name or service not known")

    with pytest.raises(TargetRefused, match=r"^host nowhere.example does not resolve"):
        await check_url("http://nowhere.example/", allow_private=False, resolver=broken)
    with pytest.raises(TargetRefused, match="port"):
        await check_url("http://hooks.example:99999/", allow_private=False, resolver=broken)


async def test_a_rebinding_name_goes_to_the_address_that_was_checked() -> None:
    """The delivery connects to the checked address with the name in Host (and in TLS SNI): a
    second lookup by the HTTP client, which could answer 127.0.0.1, never happens."""
    dispatcher = WebhookDispatcher(
        None,  # type: ignore[arg-type]  # no database: only the destination is asked for
        SECRET_KEY,
        WebhookPolicy(),
        resolver=_resolving(["93.184.215.14"], ["127.0.0.1"]),
    )
    try:
        url, headers, tls = await dispatcher._destination("https://hooks.example:8443/in?x=1")
        assert (str(url), headers, tls) == (
            "https://93.184.215.14:8443/in?x=1",
            {"Host": "hooks.example:8443"},
            {"sni_hostname": "hooks.example"},
        )
        with pytest.raises(TargetRefused, match=r"hooks.example resolves to 127.0.0.1, loopback"):
            await dispatcher._destination("https://hooks.example:8443/in")
    finally:
        await dispatcher.stop()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8000/v1/tenant", "127.0.0.1, loopback"),
        ("http://localhost:8000/", "localhost resolves to "),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a cloud metadata service"),
        ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1, private"),
        ("http://0x7f000001/", "0x7f000001 resolves to 127.0.0.1, loopback"),
        ("http://2130706433:8222/varz", "2130706433 resolves to 127.0.0.1, loopback"),
        ("https://hooks.invalid/", "host hooks.invalid does not resolve"),
    ],
)
async def test_saving_a_url_to_the_apis_neighbourhood_is_a_422(
    url: str, why: str, database: Database
) -> None:
    api = await harness(database, webhook_allow_private_targets=False)
    try:
        acme = await api.tenant("Acme", "acme.example")
        refused = await acme.client.post("/v1/webhooks", json={"url": url})
        assert refused.status_code == 422, refused.text
        error = refused.json()["detail"][0]
        assert error["field"] == "url"
        assert why in error["msg"]
        public = await acme.client.post("/v1/webhooks", json={"url": "https://93.184.215.14/hooks"})
        assert public.status_code == 201, public.text
        moved = await acme.client.patch(f"/v1/webhooks/{public.json()['id']}", json={"url": url})
        assert (moved.status_code, moved.json()["detail"][0]["field"]) == (422, "url")
    finally:
        await api.close()


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    server = await HttpReceiver().start()
    yield server
    await server.stop()


@pytest.mark.needs_nats
@pytest.mark.parametrize("allowed", [True, False])
async def test_deliveries_to_a_private_address_follow_the_setting(
    allowed: bool, database: Database, bus: Bus, receiver: HttpReceiver
) -> None:
    """A subscription saved while private targets were allowed (the api's setting), delivered by a
    dispatcher that allows them or not: sent, or refused at delivery with the reason logged."""
    policy = WebhookPolicy(max_attempts=1, retry_base_s=0.05, allow_private_targets=allowed)
    dispatcher = WebhookDispatcher(database, SECRET_KEY, policy)
    await dispatcher.start(bus, max_deliver=2)
    api = await harness(database, webhooks=dispatcher, bus=bus)
    try:
        acme = await api.tenant("Acme", "acme.example")
        sub = (
            await acme.client.post("/v1/webhooks", json={"url": receiver.url, "event_types": ["call.ended"]})
        ).json()
        await publish(bus, *a_call(acme.tenant_id, "call-1", start=datetime.now(UTC)))

        async def settled() -> dict[str, Any] | None:
            items = (await acme.client.get(f"/v1/webhooks/{sub['id']}/deliveries")).json()["items"]
            return items[0] if items and items[0]["status"] != "pending" else None

        delivery = await eventually(settled, "the delivery never settled")
        if allowed:
            assert (delivery["status"], delivery["last_status_code"]) == ("delivered", 200)
            assert len(receiver.requests) == 1
        else:
            assert delivery["status"] == "failed"
            assert delivery["last_error"].startswith("not sent: 127.0.0.1, loopback: webhooks go to public")
            assert receiver.requests == []
    finally:
        await api.close()
        await dispatcher.stop()
