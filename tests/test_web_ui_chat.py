"""The softphone's chat pane end to end: the whole stack as `make run` starts it and two softphone
pages in headless Chromium, agents 100 and 101 of the development tenant.

100 writes to 101 in Georgian: 100's line says delivered, 101's pane shows it at once with who
wrote; 101 answers (the reply goes back to the writer without typing the number); a message to an
extension nobody has says why it was not sent; 101 signs out of SIP, 100's next message waits, and
101 gets it on registering again. Reruns itself in a loopback-only network namespace, as the other
browser tests do.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from shared.bus import Bus
from shared.conversations import conversation_id
from shared.events import (
    CallCreated,
    CallCreatedData,
    CallEnded,
    CallEndedData,
    CallStatus,
    Direction,
    EndCause,
    EventEnvelope,
    MessageContent,
    MessageDelivered,
    MessageDeliveredData,
    MessageFailed,
    MessageFailedData,
    MessageFailure,
    MessageReceived,
    MessageSent,
    Party,
)
from shared.supervisor import NATS_URL_FILE
from tests.support.browser import browser_page
from tests.support.netns import isolated, rerun_isolated
from tests.test_web_ui import Stack, register, sign_in, whole_stack

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_nats, pytest.mark.slow]

GEORGIAN = "გამარჯობა! როგორ შემიძლია დაგეხმაროთ?"
CUSTOMER = "+995555123456"


async def write(page: Page, to: str | None, text: str) -> None:
    if to is not None:
        await page.fill("#chat-to", to)
    await page.fill("#chat-text", text)
    await page.click("#chat-send")


async def test_two_softphones_chat(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if not isolated():
        await asyncio.to_thread(rerun_isolated, request.node.nodeid, 300)
        return
    async with (
        whole_stack(tmp_path) as stack,
        browser_page(ignore_https_errors=True) as first,
    ):
        second = await first.context.new_page()
        for page, extension in ((first, "100"), (second, "101")):
            page.set_default_timeout(20_000)
            await sign_in(page, stack)
            await register(page, stack, extension)
        await chat(first, second, stack)
        await customer_conversation(first, stack, tmp_path)


async def chat(first: Page, second: Page, stack: Stack) -> None:
    await write(first, "101", GEORGIAN)
    sent = first.locator("#chat-log li[data-direction=out]").last
    await expect(sent).to_have_attribute("data-state", "delivered")
    got = second.locator("#chat-log li[data-direction=in]").last
    await expect(got.locator(".text")).to_have_text(GEORGIAN)
    await expect(got.locator(".party")).to_contain_text("100")
    # The reply goes back to whoever wrote.
    await expect(second.locator("#chat-to")).to_have_value("100")
    await write(second, None, "მადლობა")
    await expect(first.locator("#chat-log li[data-direction=in] .text").last).to_have_text("მადლობა")

    await write(first, "555", "hello?")
    refused = first.locator("#chat-log li[data-direction=out]").last
    await expect(refused).to_have_attribute("data-state", "failed")
    await expect(refused.locator(".state")).to_contain_text("no agent has extension 555 (404)")

    # 101 signs out of SIP: the next message waits for them and arrives when they are back.
    await second.click("#unregister")
    await expect(second.locator("#setup")).to_be_visible()
    await write(first, "101", "are you back?")
    waiting = first.locator("#chat-log li[data-direction=out]").last
    await expect(waiting).to_have_attribute("data-state", "pending")
    await register(second, stack, "101")
    await expect(second.locator("#chat-log li[data-direction=in] .text").last).to_have_text("are you back?")


def customer_history(tenant_id: str) -> list[EventEnvelope]:
    """A customer's call, then their text and the agent's answer that the carrier refused."""
    start = datetime.now(UTC) - timedelta(minutes=10)
    call = {"tenant_id": tenant_id, "call_id": "customer-call-1"}
    message = {
        "tenant_id": tenant_id,
        "customer_number": CUSTOMER,
        "conversation_id": conversation_id(tenant_id, CUSTOMER),
    }
    inbound = MessageContent(
        direction=Direction.INBOUND,
        from_number=CUSTOMER,
        to_number="+99532200200",
        text="დამირეკეთ",
        size_bytes=27,
    )
    outbound = MessageContent(
        direction=Direction.OUTBOUND, from_number="100", to_number=CUSTOMER, text="ახლავე", size_bytes=18
    )
    return [
        CallCreated(
            **call,
            sequence=0,
            occurred_at=start,
            data=CallCreatedData(direction=Direction.INBOUND, from_number=CUSTOMER, to_number="+99532200200"),
        ),
        CallEnded(
            **call,
            sequence=1,
            occurred_at=start + timedelta(seconds=30),
            data=CallEndedData(
                status=CallStatus.COMPLETED,
                cause=EndCause.NORMAL_CLEARING,
                ended_by=Party.CUSTOMER,
                message="Call ended",
                duration_s=30,
                talk_time_s=25,
            ),
        ),
        MessageReceived(
            **message, message_id="text-1", occurred_at=start + timedelta(minutes=2), data=inbound
        ),
        MessageDelivered(
            **message,
            message_id="text-1",
            agent_id="agt-100",
            occurred_at=start + timedelta(minutes=2),
            data=MessageDeliveredData(sip_status=200, waited_s=0.1),
        ),
        MessageSent(**message, message_id="text-2", occurred_at=start + timedelta(minutes=3), data=outbound),
        MessageFailed(
            **message,
            message_id="text-2",
            occurred_at=start + timedelta(minutes=3),
            data=MessageFailedData(
                cause=MessageFailure.REJECTED, sip_status=404, reason="The carrier answered 404", waited_s=1
            ),
        ),
    ]


async def customer_conversation(page: Page, stack: Stack, tmp_path: Path) -> None:
    """The call detail page shows the customer's calls and messages (from events on the stack's bus,
    as signaling would publish them for a customer with a carrier)."""
    tenant_id = (
        await (
            await page.request.get(
                f"{stack.api_url}/v1/tenant",
                headers={"Authorization": f"Bearer {stack.credentials['api_key']}"},
            )
        ).json()
    )["id"]
    url = (tmp_path / "data" / NATS_URL_FILE).read_text().strip()
    bus = await Bus.connect(url, name="test", timeout=10)
    try:
        for event in customer_history(tenant_id):
            await bus.publish_event(event)
    finally:
        await bus.close()
    await page.goto(f"{stack.api_url}/calls?call=customer-call-1")
    await expect(page.locator("#customer")).to_be_visible()
    await expect(page.locator("#customer-number")).to_have_text(CUSTOMER)
    items = page.locator("#conversation li")
    await expect(items).to_have_count(3)
    await expect(items.nth(0)).to_have_attribute("data-status", "failed")
    await expect(items.nth(0)).to_contain_text("ახლავე")
    await expect(items.nth(0)).to_contain_text("The carrier answered 404")
    await expect(items.nth(1).locator("q")).to_have_text("დამირეკეთ")
    await expect(items.nth(2)).to_have_attribute("data-kind", "call")
    await expect(items.nth(2)).to_have_attribute("data-current", "")
