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
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import browser_page
from tests.support.netns import isolated, rerun_isolated
from tests.test_web_ui import Stack, register, sign_in, whole_stack

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_nats, pytest.mark.slow]

GEORGIAN = "გამარჯობა! როგორ შემიძლია დაგეხმაროთ?"


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
