"""The browser harness itself: SIP.js in headless Chromium registering with a fake WS registrar.

No code of our SIP stack runs here beyond the digest arithmetic, so a failure points at the harness
(or at SIP.js changing), never at the gateway. What SIP.js sends is checked against PEERS.md.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.signaling.sip.auth import Algorithm, FailureKind
from shared.devcert import self_signed
from tests.support.browser import AgentError, browser_agent
from tests.support.fake_registrar import FakeRegistrar, parse_contact

pytestmark = pytest.mark.needs_chromium

AOR = "sip:100@example.test"
PASSWORD = "correct horse"


async def _register_and_unregister(registrar: FakeRegistrar, *, ignore_https_errors: bool = False) -> None:
    instance_id = str(uuid.uuid4())
    async with registrar.serving(), browser_agent(ignore_https_errors=ignore_https_errors) as agent:
        registration = await agent.register(
            server=registrar.url, aor=AOR, user="100", password=PASSWORD, instance_id=instance_id, expires=300
        )
        assert registration.state == "Registered"
        assert [handshake.subprotocols for handshake in registrar.handshakes] == [("sip",)]
        assert registrar.handshakes[0].target == "/ws"

        first, second = registrar.registers()
        assert first.value("authorization") is None
        assert second.value("authorization") is not None
        assert registrar.responses == [(401, "Unauthorized"), (200, "OK")]
        assert registrar.bindings.keys() == {AOR}
        for register in (first, second):
            assert "outbound" in register.option_tags("supported")
            contact = parse_contact(register.values("contact")[0])
            assert contact.host.endswith(".invalid")
            assert contact.uri_params["transport"] == "ws"
            assert contact.params["+sip.instance"] == f'"<urn:uuid:{instance_id}>"'
            assert contact.params["reg-id"] == "1"
            assert contact.expires == 300
        assert parse_contact(registration.contacts[0]).expires == 300

        # The harness saw the same exchange from the browser's side, byte for byte what it sent.
        sent = await agent.sent()
        assert [message.split(" ", 1)[0] for message in sent] == ["REGISTER", "REGISTER"]
        assert sent[1] == second.text
        assert [message.split("\r\n", 1)[0] for message in await agent.received()] == [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK",
        ]

        state = await agent.unregister()
        assert state.registerer == "Unregistered"
        last = registrar.registers()[-1]
        assert parse_contact(last.values("contact")[0]).expires == 0
        assert registrar.bindings == {}
        changes = [entry.text for entry in await agent.log() if entry.kind == "state"]
        assert changes.index("registerer Registered") < changes.index("registerer Unregistered")


async def test_registers_over_ws_with_digest_and_unregisters() -> None:
    await _register_and_unregister(FakeRegistrar(users={"100": PASSWORD}))


async def test_registers_over_wss_to_a_self_signed_certificate(tmp_path: Path) -> None:
    certificate = self_signed(tmp_path / "tls")
    registrar = FakeRegistrar(users={"100": PASSWORD}, ssl_context=certificate.server_context())
    assert registrar.url.startswith("wss://")
    await _register_and_unregister(registrar, ignore_https_errors=True)


async def test_wrong_password_ends_with_the_failure_status() -> None:
    registrar = FakeRegistrar(users={"100": PASSWORD})
    async with registrar.serving(), browser_agent() as agent:
        with pytest.raises(AgentError) as failure:
            await agent.register(server=registrar.url, aor=AOR, user="100", password="wrong")
        assert (failure.value.status, failure.value.reason) == (401, "Unauthorized")
        # SIP.js answers one challenge per request and gives up on the second 401.
        assert len(registrar.registers()) == 2
        assert [f.kind for f in registrar.auth_failures] == [FailureKind.BAD_CREDENTIALS]
        assert (await agent.state()).registerer == "Unregistered"

        # Without an instanceId SIP.js adds neither +sip.instance nor reg-id (PEERS.md).
        contact = parse_contact(registrar.registers()[0].values("contact")[0])
        assert "+sip.instance" not in contact.params
        assert "reg-id" not in contact.params


async def test_a_2xx_without_our_contact_is_reported_not_awaited() -> None:
    # SIP.js calls no delegate for it, only moving to Unregistered: the harness must still settle.
    registrar = FakeRegistrar(users={"100": PASSWORD}, list_bindings=False)
    async with registrar.serving(), browser_agent(step_timeout=5) as agent:
        with pytest.raises(AgentError, match="without a registration") as failure:
            await agent.register(server=registrar.url, aor=AOR, user="100", password=PASSWORD)
        assert failure.value.status is None
        assert registrar.responses[-1] == (200, "OK")


@pytest.mark.parametrize(
    ("algorithms", "registers"),
    [
        pytest.param((Algorithm.SHA256, Algorithm.MD5), True, id="md5-last"),
        pytest.param((Algorithm.MD5, Algorithm.SHA256), False, id="md5-first"),
    ],
)
async def test_sipjs_answers_only_the_last_challenge(
    algorithms: tuple[Algorithm, ...], registers: bool
) -> None:
    # SIP.js 0.21 keeps only the last WWW-Authenticate of a 401 (its parser overwrites each with
    # the next) and knows only MD5. DigestServer's default order (SHA-256, then MD5) ends in MD5 and
    # works; MD5 first leaves SIP.js with a SHA-256 challenge it refuses, and no second REGISTER.
    registrar = FakeRegistrar(users={"100": PASSWORD}, algorithms=algorithms)
    async with registrar.serving(), browser_agent() as agent:
        if registers:
            await agent.register(server=registrar.url, aor=AOR, user="100", password=PASSWORD)
            assert "algorithm=MD5" in (registrar.registers()[-1].value("authorization") or "")
            return
        with pytest.raises(AgentError) as failure:
            await agent.register(server=registrar.url, aor=AOR, user="100", password=PASSWORD)
        assert failure.value.status == 401
        assert len(registrar.registers()) == 1
        log = await agent.log()
        assert any(
            "Digest algorithm different than 'MD5'" in entry.text for entry in log if entry.kind == "sipjs"
        )
