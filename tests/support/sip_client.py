"""A small SIP user agent for tests that need to send exact bytes (garbage, half messages,
specific headers) where sipp and SIP.js cannot. It speaks UDP and TCP on 127.0.0.1."""

from __future__ import annotations

import secrets
import socket
import ssl
from dataclasses import dataclass, field

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.framing import MessageFrame, StreamFramer
from services.signaling.sip.message import Request, Response, parse_message


@dataclass
class SipClient:
    server: tuple[str, int]
    transport: str = "udp"
    timeout: float = 3.0
    #: Any 127.x.y.z works on loopback: tests use several to play different sources.
    local_ip: str = "127.0.0.1"
    sock: socket.socket = field(init=False)
    _framer: StreamFramer = field(default_factory=StreamFramer)
    _pending: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((self.local_ip, 0))
        else:
            self.sock = socket.create_connection(
                self.server, timeout=self.timeout, source_address=(self.local_ip, 0)
            )
            if self.transport == "tls":
                # Tests' servers use self-signed certificates made on the spot.
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                self.sock = context.wrap_socket(self.sock, server_hostname=self.server[0])
        self.sock.settimeout(self.timeout)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def receive_message(self) -> Request | Response:
        """The next message, a request (the gateway calls us) or a response."""
        if self.transport == "udp":
            return parse_message(self.sock.recv(65535))
        while not self._pending:
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._pending += [e.data for e in self._framer.feed(chunk) if isinstance(e, MessageFrame)]
        return parse_message(self._pending.pop(0))

    def receive(self) -> Response:
        message = self.receive_message()
        assert isinstance(message, Response), message
        return message

    def request(self, method: str, uri: str, headers: list[str], body: bytes = b"") -> Response:
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        via = f"Via: SIP/2.0/{self.transport.upper()} {self.local_ip}:{self.port};branch={branch};rport"
        text = "\r\n".join([f"{method} {uri} SIP/2.0", via, "Max-Forwards: 70", *headers])
        self.send(f"{text}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        response = self.receive()
        while response.status_code < 200:
            response = self.receive()
        return response

    def register(
        self, user: str, domain: str, password: str | None, *, expires: int = 300, user_agent: str = "test-ua"
    ) -> Response:
        """REGISTER, answering one challenge with ``password`` (None: don't answer it)."""
        call_id = secrets.token_hex(8)
        base = [
            f"From: <sip:{user}@{domain}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{user}@{domain}>",
            f"Call-ID: {call_id}",
            f"Contact: <sip:{user}@{self.local_ip}:{self.port};transport={self.transport}>",
            f"Expires: {expires}",
            f"User-Agent: {user_agent}",
        ]
        first = self.request("REGISTER", f"sip:{domain}", [*base, "CSeq: 1 REGISTER"])
        if first.status_code != 401 or password is None:
            return first
        answer = DigestClient(user, password=password).answer(
            first.headers.get_all("WWW-Authenticate"), "REGISTER", f"sip:{domain}"
        )
        assert answer.value is not None
        authorized = [*base, "CSeq: 2 REGISTER", f"Authorization: {answer.value}"]
        return self.request("REGISTER", f"sip:{domain}", authorized)

    def close(self) -> None:
        self.sock.close()
