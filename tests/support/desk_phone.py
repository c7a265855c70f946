"""An agent's desk phone for end-to-end tests: registers over UDP like a real SIP phone, rings when
the gateway calls it, answers with a real RTP endpoint (:class:`RtpPeer`), or stays ringing until
cancelled, or says busy. Blocking calls: run them with ``asyncio.to_thread``."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Request, Response, make_response, new_tag
from tests.support.gateway import AGENT_PASSWORD, DOMAIN
from tests.support.rtp_peer import RtpPeer
from tests.support.sip_client import SipClient


@dataclass
class DeskPhone:
    client: SipClient
    user: str
    tag: str = field(default_factory=new_tag)
    #: Every request the gateway sent, in order (retransmissions included).
    received: list[Request] = field(default_factory=list)
    #: Requests that arrived while we waited for a response (already answered 200), for wait_request.
    pending: list[Request] = field(default_factory=list)
    #: Our CSeq in the dialogs of calls we answered (RFC 3261 12.2.1.1: the UAS starts its own).
    cseq: int = 0

    @classmethod
    def registered(cls, server: tuple[str, int], user: str, domain: str, password: str) -> DeskPhone:
        client = SipClient(server, timeout=20)
        response = client.register(user, domain, password)
        assert response.status_code == 200, response
        return cls(client, user)

    def wait_request(self, method: str) -> Request:
        """The next request of ``method``; other requests are answered 200 (a BYE after a CANCEL
        race, an OPTIONS), responses ignored."""
        while self.pending:
            queued = self.pending.pop(0)
            if queued.method == method:
                return queued
        while True:
            message = self.client.receive_message()
            if isinstance(message, Response):
                continue
            self.received.append(message)
            if message.method == method:
                return message
            if message.method not in ("ACK",):
                self.reply(message, 200)

    def reply(self, request: Request, status: int, *, body: bytes = b"") -> None:
        headers: list[tuple[str, str]] = []
        if 100 < status < 300 and request.method == "INVITE":
            headers.append(("Contact", f"<sip:{self.user}@127.0.0.1:{self.client.port}>"))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        tag = self.tag if status > 100 else None
        response = make_response(request, status, to_tag=tag, headers=tuple(headers), body=body)
        self.client.send(response.encode())

    def in_dialog(
        self, invite: Request, method: str, headers: tuple[str, ...] = (), body: bytes = b""
    ) -> Response:
        """A request of ours in the dialog of a call we answered (REFER, BYE): From is the INVITE's To
        with our tag, To its From, sent to the gateway's Contact. Requests crossing it are answered
        200 and kept for :meth:`wait_request`; returns our request's final response."""
        self.cseq += 1
        target = (invite.headers.get("Contact") or "").strip().strip("<>").split(">")[0]
        to_value = invite.headers.get("To") or ""
        lines = [
            f"From: {to_value};tag={self.tag}",
            f"To: {invite.headers.get('From')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{self.user}@127.0.0.1:{self.client.port}>",
            *headers,
        ]
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        via = f"Via: SIP/2.0/UDP 127.0.0.1:{self.client.port};branch={branch};rport"
        text = "\r\n".join([f"{method} {target} SIP/2.0", via, "Max-Forwards: 70", *lines])
        self.client.send(f"{text}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        while True:
            message = self.client.receive_message()
            if isinstance(message, Request):
                self.received.append(message)
                if message.method != "ACK":
                    self.reply(message, 200)
                    self.pending.append(message)
                continue
            if message.cseq.method == method and message.cseq.seq == self.cseq and message.status_code >= 200:
                return message

    def acknowledge(self, invite: Request, answered: Response) -> None:
        """ACK the 2xx to our re-INVITE in the dialog of ``invite`` (RFC 3261 13.2.2.4)."""
        target = (invite.headers.get("Contact") or "").strip().strip("<>").split(">")[0]
        self.client.send(_ack(answered, target, answered.cseq.seq, self.client, new_branch=True))

    def close(self) -> None:
        self.client.close()


# Placing a call as agent 100 (blocking, like DeskPhone).


def place_call(
    sip: tuple[str, int], offer: str, number: str = "555123456", *, client: SipClient | None = None
) -> tuple[SipClient, Response, dict[str, str]]:
    """INVITE as agent 100, answering the 407 (RFC 3261 22.3); returns the final response.
    ``client``: the socket of agent 100's registered phone (a second call on the same phone)."""
    client = client or SipClient(sip, timeout=15)
    uri = f"sip:{number}@{DOMAIN}"
    dialog = {
        "from": f"<sip:100@{DOMAIN}>;tag={secrets.token_hex(4)}",
        "call_id": secrets.token_hex(8),
        "uri": uri,
    }
    headers = [
        f"From: {dialog['from']}",
        f"To: <{uri}>",
        f"Call-ID: {dialog['call_id']}",
        f"Contact: <sip:100@127.0.0.1:{client.port}>",
        "Content-Type: application/sdp",
    ]
    challenge = client.request("INVITE", uri, [*headers, "CSeq: 1 INVITE"], offer.encode())
    assert challenge.status_code == 407
    client.send(_ack(challenge, uri, 1, client))
    answer = DigestClient("100", password=AGENT_PASSWORD).answer(
        challenge.headers.get_all("Proxy-Authenticate"), "INVITE", uri
    )
    final = client.request(
        "INVITE", uri, [*headers, "CSeq: 2 INVITE", f"Proxy-Authorization: {answer.value}"], offer.encode()
    )
    return client, final, dialog


async def talking(
    sip: tuple[str, int], line: RtpPeer, number: str = "555123456", *, tone: float | None = 1000
) -> tuple[SipClient, Response, dict[str, str], str]:
    """Agent 100 calls ``number`` with ``line``'s audio and the call is answered: ``line`` sends to
    the answer (playing ``tone``), the 2xx is acknowledged. Returns the socket, the 2xx, the dialog
    and the target of in-dialog requests, as :func:`in_dialog` and :func:`hang_up` take them."""
    client, answered, dialog = await asyncio.to_thread(place_call, sip, line.description(), number)
    assert answered.status_code == 200, answered
    line.learn(answered.body.decode())
    target = acknowledge(client, answered)
    if tone is not None:
        line.start_tone(tone)
    return client, answered, dialog, target


def _ack(response: Response, uri: str, cseq: int, client: SipClient, *, new_branch: bool = False) -> bytes:
    via = response.headers.get_all("Via")[0]
    if new_branch:
        via = f"SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK{secrets.token_hex(8)};rport"
    return (
        f"ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {response.headers.get('From')}\r\n"
        f"To: {response.headers.get('To')}\r\nCall-ID: {response.call_id}\r\nCSeq: {cseq} ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def acknowledge(client: SipClient, answered: Response, cseq: int = 2) -> str:
    """ACK the 2xx at the answerer's Contact (RFC 3261 13.2.2.4); returns that target."""
    target = (answered.headers.get("Contact") or "").strip("<>").split(">")[0]
    client.send(_ack(answered, target, cseq, client, new_branch=True))
    return target


def in_dialog(
    client: SipClient,
    answered: Response,
    dialog: dict[str, str],
    target: str,
    method: str,
    cseq: int,
    *,
    headers: tuple[str, ...] = (),
    body: bytes = b"",
) -> Response:
    """A request in the call's dialog (re-INVITE, INFO, BYE) with CSeq ``cseq``; its final response."""
    lines = [
        f"From: {dialog['from']}",
        f"To: {answered.headers.get('To')}",
        f"Call-ID: {dialog['call_id']}",
        f"CSeq: {cseq} {method}",
        *headers,
    ]
    if method == "INVITE":
        lines.append(f"Contact: <sip:100@127.0.0.1:{client.port}>")
    response = client.request(method, target, lines, body)
    if method == "INVITE" and response.status_code >= 300:
        # The transaction's own ACK for a failure, on the INVITE's branch (RFC 3261 17.1.1.3).
        client.send(_ack(response, target, cseq, client))
    return response


def hang_up(
    client: SipClient, answered: Response, dialog: dict[str, str], target: str, cseq: int = 3
) -> Response:
    response = in_dialog(client, answered, dialog, target, "BYE", cseq)
    client.close()
    return response
