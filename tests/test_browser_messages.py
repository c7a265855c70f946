"""Text messages between two agents' browsers: SIP.js 0.21 in two headless Chromium instances, each
registered over SIP over WebSocket, sends with its ``Messager`` and gets messages through its
UserAgent's ``onMessage`` delegate (RFC 3428 MESSAGE through the gateway).

Agent 100 writes to agent 101 while 101 is offline: the gateway answers 202 and keeps the message;
101 registers and gets it. Then they write to each other online, in Georgian, byte for byte. Bad
input from the browser (too large, a type that is not text) is answered 413 and 415 and disturbs
neither browser. Every message's events go out with one outcome each.

A customer's text from sipp as the carrier, to the tenant's number, reaches both agents' browsers.

Runs in a loopback-only network namespace, as tests/test_browser_call.py explains.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.events import (
    Direction,
    MessageDelivered,
    MessageFailed,
    MessageFailure,
    MessageReceived,
    MessageSent,
)
from tests.support.browser import AgentError, browser_agent
from tests.support.gateway import (
    AGENT_PASSWORD,
    DOMAIN,
    add_agent,
    add_inbound_trunk,
    gateway_stack,
    register_browser,
)
from tests.support.messaging import GEORGIAN, message_events
from tests.support.nats import NatsServer
from tests.support.netns import with_nats_isolated
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_sipp, pytest.mark.needs_nats]

MAX_BYTES = 1024
DID = "+995322000000"


async def test_two_browsers_write_to_each_other_in_georgian(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await with_nats_isolated(request, tmp_path, _messages)


async def test_a_customers_text_reaches_the_ring_groups_browsers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await with_nats_isolated(request, tmp_path, _inbound)


async def _messages(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = {"ECHODESK_SIGNALING_MESSAGE_MAX_BYTES": str(MAX_BYTES)}
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, _):
        await add_agent(gateway.bus, "101", "pw-101")
        async with browser_agent() as first, browser_agent() as second:
            await register_browser(first, gateway, "100", AGENT_PASSWORD)
            # 101 is not registered yet: the message waits for them.
            waiting = await first.message("101", GEORGIAN)
            assert (waiting.status, waiting.reason) == (
                202,
                "Accepted: the agent will get it when they register",
            )
            await register_browser(second, gateway, "101", "pw-101")
            delivered = await second.wait_for_message()
            assert delivered.body == GEORGIAN
            assert delivered.from_uri == f"sip:100@{DOMAIN}"
            assert delivered.to_uri == f"sip:101@{DOMAIN}"
            assert delivered.content_type.startswith("text/plain")

            online = await first.message("101", f"{GEORGIAN} — ახლა ონლაინ")
            assert (online.status, online.reason) == (200, "OK")
            assert (await second.wait_for_message()).body == f"{GEORGIAN} — ახლა ონლაინ"
            reply = await second.message("100", "მადლობა!")
            assert (reply.status, reply.reason) == (200, "OK")
            assert (await first.wait_for_message()).body == "მადლობა!"

            # Bad input from a browser: answered with the reason, nobody else gets anything.
            too_big = await first.message("101", "ა" * (MAX_BYTES // 3 + 1))
            assert (too_big.status, too_big.reason) == (
                413,
                f"Message body too large: {3 * (MAX_BYTES // 3 + 1)} bytes, at most {MAX_BYTES}",
            )
            not_text = await first.message("101", '{"text": "hi"}', "application/json")
            assert not_text.status == 415
            nobody = await first.message("555", "hello?")
            assert (nobody.status, nobody.reason) == (404, "no agent has extension 555")
            for agent in (first, second):
                with pytest.raises(AgentError, match="no message within"):
                    await agent.wait_for_message(timeout=1.0)
            # A browser that refuses a message: its sender hears why, the message is failed.
            await second.answer_messages_with(488)
            refused = await first.message("101", "hi")
            assert refused.status == 488
            await second.answer_messages_with(200)
            still = await first.message("101", "still there?")
            assert still.status == 200
            assert (await second.wait_for_message()).body == "still there?"

        events = await message_events(gateway.bus, 12)
        by_message: dict[str, list[str]] = {}
        for event in events:
            by_message.setdefault(event.message_id, []).append(event.type)  # type: ignore[attr-defined]
        assert sorted(by_message.values()) == sorted(
            [
                ["message.sent", "message.delivered"],
                ["message.sent", "message.delivered"],
                ["message.sent", "message.delivered"],
                ["message.sent", "message.failed"],  # no extension 555
                ["message.sent", "message.failed"],  # refused 488
                ["message.sent", "message.delivered"],
            ]
        )
        sent = [e for e in events if isinstance(e, MessageSent)]
        assert sent[0].data.text == GEORGIAN
        assert sent[0].data.size_bytes == len(GEORGIAN.encode())
        assert (sent[0].data.direction, sent[0].data.from_agent_id, sent[0].data.to_agent_id) == (
            Direction.INTERNAL,
            "a100",
            "a101",
        )
        first_delivery = next(e for e in events if isinstance(e, MessageDelivered))
        assert (first_delivery.message_id, first_delivery.agent_id, first_delivery.data.queued) == (
            sent[0].message_id,
            "a101",
            True,
        )
        failures = {e.data.cause: e.data.sip_status for e in events if isinstance(e, MessageFailed)}
        assert failures == {MessageFailure.NO_ROUTE: 404, MessageFailure.REJECTED: 488}


async def _inbound(nats_server: NatsServer, tmp_path: Path) -> None:
    async with gateway_stack(nats_server, tmp_path) as (gateway, _):
        await add_agent(gateway.bus, "101", "pw-101")
        port = await add_inbound_trunk(gateway.bus, (DID,))
        async with browser_agent() as first, browser_agent() as second:
            await register_browser(first, gateway, "100", AGENT_PASSWORD)
            await register_browser(second, gateway, "101", "pw-101")
            carrier = Sipp(
                "carrier_message_uac",
                tmp_path,
                remote=gateway.sip,
                injection=[["555123456", DID.lstrip("+"), GEORGIAN]],
                calls=1,
                timeout=20,
                recv_timeout=15,
                local_port=port,
            )
            (await carrier.run_async()).assert_success(calls=1)
            # sipp ends the body with the scenario's line break; the browsers get it as sent.
            for agent in (first, second):
                got = await agent.wait_for_message()
                assert got.body == GEORGIAN + "\r\n"
                assert got.from_uri == f"sip:+995555123456@{DOMAIN}"
                assert got.display_name == "Customer"
        received, delivered = await message_events(gateway.bus, 2)
        assert isinstance(received, MessageReceived)
        assert isinstance(delivered, MessageDelivered)
        assert received.customer_number == "+995555123456"
        assert delivered.agent_id in ("a100", "a101")
