"""Text messages with sipp as the carrier: a customer's MESSAGE to one of our numbers reaches the
ring group's registered phones, and an agent's MESSAGE to a customer's number goes out through the
trunk, challenged with 407 and sent again with the trunk's credentials (RFC 3428, RFC 3261 22.3)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.signaling.sip.auth import Algorithm, ha1, parse_credentials, request_digest
from services.signaling.sip.message import Response, parse_message
from shared import subjects
from shared.bus import Bus, RemoteError
from shared.conversations import conversation_id
from shared.events import Direction, MessageDelivered, MessageReceived, MessageSent
from shared.messages import MessageOutcome, SendMessage
from shared.records import ContactLink, TrunkRecord, agent_key, agent_record, contact_key, trunk_key
from shared.sealing import seal
from shared.supervisor import free_port
from tests.support.messaging import GEORGIAN, message_events, receive_message, send_message
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, start_service
from tests.support.sip_client import SipClient
from tests.support.sipp import Sipp, require_sipp

pytestmark = pytest.mark.needs_sipp

SECRET_KEY = "test-secret-key"
DOMAIN = "acme.test"
DID = "+99532200200"
CUSTOMER = "+995555123456"


class CarrierSocket:
    """Raw MESSAGEs from the carrier's own address and port (what sipp cannot send: bad bytes)."""

    def __init__(self, gateway: tuple[str, int], port: int) -> None:
        self.gateway = gateway
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(5.0)

    def message(self, uri: str, body: bytes, content_type: str) -> Response:
        port = self.sock.getsockname()[1]
        head = "\r\n".join(
            [
                f"MESSAGE {uri} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
                "Max-Forwards: 70",
                f"From: <sip:+995555123456@127.0.0.1:{port}>;tag={secrets.token_hex(4)}",
                f"To: <{uri}>",
                f"Call-ID: {secrets.token_hex(8)}",
                "CSeq: 1 MESSAGE",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}",
            ]
        )
        self.sock.sendto(head.encode() + b"\r\n\r\n" + body, self.gateway)
        while True:
            response = parse_message(self.sock.recv(65535))
            if isinstance(response, Response) and response.status_code >= 200:
                return response

    def close(self) -> None:
        self.sock.close()


@dataclass
class Gateway:
    bus: Bus
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None

    def client(self, transport: str) -> SipClient:
        port = int(self.env[f"ECHODESK_SIGNALING_SIP_{transport.upper()}_PORT"])
        return SipClient(("127.0.0.1", port), transport, timeout=10.0)

    @property
    def sip(self) -> tuple[str, int]:
        return ("127.0.0.1", int(self.env["ECHODESK_SIGNALING_SIP_UDP_PORT"]))

    async def put_trunk(self, trunk_id: str, port: int, **fields: object) -> None:
        record = TrunkRecord(
            tenant_id="acme",
            trunk_id=trunk_id,
            name=trunk_id,
            sip_server="127.0.0.1",
            sip_port=port,
            registers=False,
            keepalive_s=3600,
            **fields,
        )
        kv = await self.bus.bucket(subjects.TRUNKS_KV)
        await kv.put(trunk_key("acme", trunk_id), record.model_dump_json().encode())


@pytest.fixture
async def gateway(nats_server: NatsServer) -> AsyncIterator[Gateway]:
    require_sipp()
    bus = await Bus.connect(nats_server.url, name="test", timeout=5)
    await bus.ensure_streams()
    agents = await bus.bucket(subjects.AGENTS_KV)
    for user, groups in (("100", ("support",)), ("101", ("support",)), ("102", ())):
        record = agent_record(
            tenant_id="acme",
            agent_id=f"a{user}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=f"pw-{user}",
            ring_groups=groups,
        )
        await agents.put(agent_key(DOMAIN, user), record.model_dump_json().encode())
    env = {
        **free_ports_env("signaling"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_LOG_JSON": "true",
        "ECHODESK_SECRET_KEY": SECRET_KEY,
        "ECHODESK_SIGNALING_SIP_PUBLIC_HOST": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_HOST": "127.0.0.1",
    }
    gateway = Gateway(bus, env)
    try:
        yield gateway  # the test puts its trunks, then starts signaling with start()
    finally:
        process = gateway.process
        if process is not None:
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.to_thread(process.communicate, None, 30)
            assert process.returncode == 0, output
            assert "Traceback" not in output, output
        await bus.close()


async def start(gateway: Gateway) -> None:
    gateway.process = await asyncio.to_thread(start_service, "signaling", gateway.env)


async def test_customers_message_reaches_the_ring_groups_phones(gateway: Gateway, tmp_path: Path) -> None:
    carrier_port = free_port()
    await gateway.put_trunk("geo-in", carrier_port, dids=(DID,), ring_group="support")
    # The helpdesk linked this customer to its own contact (what PUT /v1/contacts/{number} writes).
    link = ContactLink(tenant_id="acme", number=CUSTOMER, contact_id="crm-42")
    contacts = await gateway.bus.bucket(subjects.CONTACTS_KV)
    await contacts.put(contact_key("acme", CUSTOMER), link.model_dump_json().encode())
    await start(gateway)
    phones = {"100": gateway.client("tcp"), "101": gateway.client("udp")}
    outsider = gateway.client("udp")
    for user, phone in phones.items():
        assert (await asyncio.to_thread(phone.register, user, DOMAIN, f"pw-{user}")).status_code == 200
    assert (await asyncio.to_thread(outsider.register, "102", DOMAIN, "pw-102")).status_code == 200
    receiving = [asyncio.create_task(asyncio.to_thread(receive_message, phone)) for phone in phones.values()]
    carrier = Sipp(
        "carrier_message_uac",
        tmp_path,
        remote=gateway.sip,
        injection=[["555123456", DID.lstrip("+"), GEORGIAN]],
        calls=1,
        timeout=20,
        recv_timeout=15,
        local_port=carrier_port,
    )
    result = await carrier.run_async()
    result.assert_success(calls=1)
    # sipp ends the body with the scenario's line break: relayed byte for byte, it is still there.
    sent_body = GEORGIAN + "\r\n"
    for task in receiving:
        request = await task
        assert request.body == sent_body.encode()
        assert f"sip:{CUSTOMER}@{DOMAIN}" in (request.headers.get("From") or "")
    # Agent 102 is not in the trunk's ring group: nothing for them.
    outsider.sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(outsider.receive_message)
    received, delivered = await message_events(gateway.bus, 2)
    assert isinstance(received, MessageReceived)
    assert isinstance(delivered, MessageDelivered)
    assert received.data.text == sent_body
    assert (received.data.direction, received.data.from_number, received.data.to_number) == (
        Direction.INBOUND,
        CUSTOMER,
        DID,
    )
    assert received.data.trunk_id == "geo-in"
    assert received.customer_number == delivered.customer_number == CUSTOMER
    assert received.conversation_id == delivered.conversation_id == conversation_id("acme", CUSTOMER)
    assert received.contact_id == delivered.contact_id == "crm-42"
    assert delivered.agent_id in ("a100", "a101")

    # The same carrier sending what cannot be taken: each answered, nobody's phone disturbed.
    carrier_phone = CarrierSocket(gateway.sip, carrier_port)
    for uri, body, content_type, expected in (
        (
            f"sip:{DID}@127.0.0.1",
            b"\xff\xfe",
            "text/plain",
            (400, "Invalid UTF-8 in the body at byte 0: invalid start byte"),
        ),
        (f"sip:{DID}@127.0.0.1", b"<b>hi</b>", "text/html", (415, "Unsupported Media Type")),
        (
            f"sip:{DID}@127.0.0.1",
            b"x" * 5000,
            "text/plain",
            (413, "Message body too large: 5000 bytes, at most 4096"),
        ),
        ("sip:+99532999999@127.0.0.1", b"hi", "text/plain", (404, "Number not served here")),
    ):
        answer = await asyncio.to_thread(carrier_phone.message, uri, body, content_type)
        assert (answer.status_code, answer.reason) == expected
    carrier_phone.close()
    for phone in (*phones.values(), outsider):
        phone.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(phone.receive_message)
        phone.close()


async def test_message_to_a_customer_answers_the_carriers_challenge(gateway: Gateway, tmp_path: Path) -> None:
    carrier = Sipp(
        "carrier_message_uas",
        tmp_path,
        calls=2,  # the trunk's OPTIONS probe, then the message
        timeout=40,
        recv_timeout=30,
    )
    await carrier.start_async()
    try:
        await gateway.put_trunk(
            "geo",
            carrier.port,
            username="trunk1",
            domain="carrier.test",
            password_sealed=seal("carrier-secret", SECRET_KEY),
            is_default=True,
        )
        await start(gateway)
        agent = gateway.client("udp")
        answer = await asyncio.to_thread(
            send_message, agent, "100", DOMAIN, "pw-100", f"sip:555123456@{DOMAIN}", GEORGIAN.encode()
        )
        assert (answer.status_code, answer.reason) == (200, "OK")
        result = await carrier.wait_async()
    finally:
        await carrier.stop_async()
    result.assert_success(calls=2)
    assert result.count("407", "Sent") == 1
    assert result.count("MESSAGE", "Recv") == 2
    log = result.scenario_log
    assert f"MESSAGE body: {GEORGIAN}" in log
    # The carrier's own check, done here (sipp's verifyauth does not read Proxy-Authorization).
    credentials = parse_credentials(log.split("Proxy-Authorization: ", 1)[1].splitlines()[0])
    assert (credentials.username, credentials.realm) == ("trunk1", "carrier.test")
    assert credentials.uri == f"sip:{CUSTOMER}@carrier.test"
    expected = request_digest(
        ha1=ha1("trunk1", "carrier.test", "carrier-secret", Algorithm.MD5),
        algorithm=Algorithm.MD5,
        nonce=credentials.nonce,
        method="MESSAGE",
        uri=credentials.uri,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )
    assert credentials.response == expected
    sent, delivered = await message_events(gateway.bus, 2)
    assert isinstance(sent, MessageSent)
    assert isinstance(delivered, MessageDelivered)
    assert (sent.data.direction, sent.data.to_number, sent.data.trunk_id) == (
        Direction.OUTBOUND,
        CUSTOMER,
        "geo",
    )
    assert sent.agent_id == delivered.agent_id == "a100"
    assert sent.conversation_id == conversation_id("acme", CUSTOMER)
    assert delivered.data.sip_status == 202
    agent.close()


async def test_the_tenant_writes_to_a_customer_from_its_trunk(gateway: Gateway, tmp_path: Path) -> None:
    """What POST /v1/messages without an agent asks any signaling instance (messages.command.send)."""
    carrier = Sipp("carrier_message_uas", tmp_path, calls=2, timeout=40, recv_timeout=30)
    await carrier.start_async()
    try:
        await gateway.put_trunk(
            "geo",
            carrier.port,
            username="trunk1",
            domain="carrier.test",
            password_sealed=seal("carrier-secret", SECRET_KEY),
            is_default=True,
        )
        await start(gateway)
        command = SendMessage(tenant_id="acme", to="0555 12 34 56", text=GEORGIAN)
        outcome = await gateway.bus.request(
            subjects.message_command("send"), command, MessageOutcome, timeout=15
        )
        assert (outcome.outcome, outcome.sip_status) == ("delivered", 200)
        with pytest.raises(RemoteError, match="is not a customer's phone number"):
            await gateway.bus.request(
                subjects.message_command("send"),
                SendMessage(tenant_id="acme", to="100", text="hi"),
                MessageOutcome,
                timeout=15,
            )
        result = await carrier.wait_async()
    finally:
        await carrier.stop_async()
    result.assert_success(calls=2)
    assert result.count("407", "Sent") == 1
    assert f"MESSAGE body: {GEORGIAN}" in result.scenario_log
    sent, delivered = await message_events(gateway.bus, 2)
    assert isinstance(sent, MessageSent)
    assert isinstance(delivered, MessageDelivered)
    assert sent.message_id == outcome.message_id
    assert (sent.agent_id, sent.data.from_agent_id, sent.data.from_number, sent.data.to_number) == (
        None,
        None,
        "trunk1",
        CUSTOMER,
    )
    assert (delivered.customer_number, delivered.data.sip_status) == (CUSTOMER, 202)
