"""An agent's desk phone for end-to-end tests: registers over UDP like a real SIP phone, rings when
the gateway calls it, answers with a real RTP endpoint (:class:`RtpPeer`), or stays ringing until
cancelled, or says busy. Blocking calls: run them with ``asyncio.to_thread``."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.signaling.sip.message import Request, Response, make_response, new_tag
from tests.support.sip_client import SipClient


@dataclass
class DeskPhone:
    client: SipClient
    user: str
    tag: str = field(default_factory=new_tag)
    #: Every request the gateway sent, in order (retransmissions included).
    received: list[Request] = field(default_factory=list)

    @classmethod
    def registered(cls, server: tuple[str, int], user: str, domain: str, password: str) -> DeskPhone:
        client = SipClient(server, timeout=20)
        response = client.register(user, domain, password)
        assert response.status_code == 200, response
        return cls(client, user)

    def wait_request(self, method: str) -> Request:
        """The next request of ``method``; other requests are answered 200 (a BYE after a CANCEL
        race, an OPTIONS), responses ignored."""
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

    def close(self) -> None:
        self.client.close()
