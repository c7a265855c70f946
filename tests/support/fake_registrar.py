"""A minimal SIP registrar over WebSocket (RFC 7118), to test the browser harness without our stack.

It does what a registrar must for SIP.js to register and no more: the WebSocket handshake with the
``sip`` subprotocol (refused otherwise), a digest challenge from ``services.signaling.sip.auth``,
and a 200 listing the binding with its expiry. Every handshake and request is recorded for the
test to assert on. Its SIP parsing is deliberately tiny (a fake must not share the parser under
test): a start line, ``Name: value`` lines and the few Contact parameters the tests look at.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from services.signaling.sip.auth import Algorithm, DigestFailure, DigestOk, DigestServer, ha1

# The compact header forms (RFC 3261 7.3.3) of the headers a REGISTER exchange carries.
_COMPACT = {
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "f": "from",
    "k": "supported",
    "t": "to",
    "v": "via",
}
DEFAULT_EXPIRES = 3600


@dataclass(frozen=True, slots=True)
class SipRequest:
    """One received request: header names lower-cased and compact forms expanded."""

    method: str
    uri: str
    headers: tuple[tuple[str, str], ...]
    body: str
    text: str

    def values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for header, value in self.headers if header == wanted]

    def value(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    def option_tags(self, name: str) -> set[str]:
        """Tokens of a comma-separated header such as Supported or Require."""
        return {tag.strip().lower() for value in self.values(name) for tag in value.split(",") if tag.strip()}


@dataclass(frozen=True, slots=True)
class Contact:
    """A Contact value split into what registration tests check."""

    uri: str
    user: str
    host: str
    uri_params: Mapping[str, str | None]
    params: Mapping[str, str | None]

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        return int(value) if value is not None else None


def parse_request(text: str) -> SipRequest | None:
    """The request in ``text``; None for a response (the fake only answers requests)."""
    head, _, body = text.partition("\r\n\r\n")
    start, *lines = head.split("\r\n")
    if start.startswith("SIP/2.0 "):
        return None
    method, uri, _version = start.split(" ", 2)
    headers: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers.pop()
            headers.append((name, f"{value} {line.strip()}"))
            continue
        name, _, value = line.partition(":")
        lowered = name.strip().lower()
        headers.append((_COMPACT.get(lowered, lowered), value.strip()))
    return SipRequest(method=method, uri=uri, headers=tuple(headers), body=body, text=text)


def _split_params(text: str) -> dict[str, str | None]:
    # ';'-separated name[=value] pairs; a quoted value may itself hold ';' (+sip.instance does not,
    # but a display name or a future parameter might).
    params: dict[str, str | None] = {}
    pieces: list[str] = []
    current = ""
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            pieces.append(current)
            current = ""
        else:
            current += char
    pieces.append(current)
    for piece in pieces:
        if piece.strip():
            name, sep, value = piece.strip().partition("=")
            params[name.strip().lower()] = value.strip() if sep else None
    return params


def parse_contact(value: str) -> Contact:
    """``[display] <sip:user@host;uri-params>;params`` (the name-addr form SIP.js always sends)."""
    start, end = value.index("<"), value.index(">")
    uri = value[start + 1 : end]
    scheme_rest = uri.split(":", 1)[1]
    address, _, uri_param_text = scheme_rest.partition(";")
    user, _, host = address.rpartition("@")
    return Contact(
        uri=uri,
        user=user,
        host=host.split(":")[0].lower(),
        uri_params=_split_params(uri_param_text),
        params=_split_params(value[end + 1 :]),
    )


@dataclass(frozen=True, slots=True)
class Handshake:
    target: str
    subprotocols: tuple[str, ...]
    accepted: bool


@dataclass
class FakeRegistrar:
    """Registers ``users`` (name -> password) for ``realm``; serve it with :meth:`serving`."""

    realm: str = "example.test"
    users: Mapping[str, str] = field(default_factory=dict)
    #: Challenges offered, most preferred first (one WWW-Authenticate each).
    algorithms: Sequence[Algorithm] = (Algorithm.MD5,)
    ssl_context: ssl.SSLContext | None = None
    #: False answers a good REGISTER with a 200 that lists no binding, which SIP.js drops.
    list_bindings: bool = True
    handshakes: list[Handshake] = field(default_factory=list)
    requests: list[SipRequest] = field(default_factory=list)
    #: (status, reason) of every response sent, in order.
    responses: list[tuple[int, str]] = field(default_factory=list)
    auth_failures: list[DigestFailure] = field(default_factory=list)
    #: AoR -> Contact URI of the live binding.
    bindings: dict[str, str] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self._digest = DigestServer(self.realm, secrets.token_bytes(32), algorithms=tuple(self.algorithms))
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/ws"

    def registers(self) -> list[SipRequest]:
        return [request for request in self.requests if request.method == "REGISTER"]

    async def wait_for(self, predicate: Callable[[FakeRegistrar], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds after some request was handled."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeRegistrar]:
        tasks: set[asyncio.Task[None]] = set()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._serve(reader, writer)
            finally:
                tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            for task in list(tasks):
                with suppress(asyncio.CancelledError):
                    await task
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        text = ""
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, ssl.SSLError):
                return
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, Request):
                    # RFC 7118 section 4.1: the client offers "sip" and the server must choose it.
                    offered = tuple(event.subprotocols)
                    accepted = "sip" in offered
                    self.handshakes.append(Handshake(event.target, offered, accepted))
                    if accepted:
                        writer.write(ws.send(AcceptConnection(subprotocol="sip")))
                    else:
                        writer.write(ws.send(RejectConnection(status_code=400)))
                elif isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        reply = await self._handle(text)
                        text = ""
                        if reply is not None:
                            writer.write(ws.send(TextMessage(data=reply)))
                elif isinstance(event, Ping):
                    writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    with suppress(Exception):
                        writer.write(ws.send(event.response()))
                        await writer.drain()
                    return
            if not data:
                return
            await writer.drain()

    async def _handle(self, text: str) -> str | None:
        request = parse_request(text)
        if request is None:
            return None
        async with self._changed:
            self.requests.append(request)
            reply = self._answer(request)
            self._changed.notify_all()
        return reply

    def _answer(self, request: SipRequest) -> str | None:
        if request.method == "ACK":
            return None
        if request.method != "REGISTER":
            return self._response(request, 501, "Not Implemented")
        authorization = request.value("authorization")
        if authorization is None:
            return self._challenge(request, stale=False)
        result = self._digest.verify(authorization, "REGISTER", time.time(), self._lookup_ha1)
        if isinstance(result, DigestFailure):
            self.auth_failures.append(result)
            return self._challenge(request, stale=result.stale)
        return self._register(request, result)

    def _lookup_ha1(self, username: str, algorithm: Algorithm) -> str | None:
        password = self.users.get(username)
        return None if password is None else ha1(username, self.realm, password, algorithm)

    def _challenge(self, request: SipRequest, *, stale: bool) -> str:
        challenges = self._digest.challenges(time.time(), stale=stale)
        return self._response(request, 401, "Unauthorized", [("WWW-Authenticate", c) for c in challenges])

    def _register(self, request: SipRequest, credentials: DigestOk) -> str:
        to = request.value("to") or ""
        aor = to[to.index("<") + 1 : to.index(">")] if "<" in to else to.split(";")[0]
        contact_values = request.values("contact")
        if not contact_values:
            return self._response(request, 400, "Missing Contact")
        contact = parse_contact(contact_values[0])
        expires = contact.expires
        if expires is None:
            header = request.value("expires")
            expires = int(header) if header is not None else DEFAULT_EXPIRES
        if expires == 0:
            self.bindings.pop(aor, None)
            return self._response(request, 200, "OK")
        self.bindings[aor] = contact.uri
        if not self.list_bindings:
            return self._response(request, 200, "OK")
        return self._response(request, 200, "OK", [("Contact", f"<{contact.uri}>;expires={expires}")])

    def _response(
        self, request: SipRequest, status: int, reason: str, extra: Sequence[tuple[str, str]] = ()
    ) -> str:
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in request.values("via")]
        to = request.value("to") or ""
        if status > 100 and ";tag=" not in to:
            to += f";tag={secrets.token_hex(6)}"
        lines += [
            f"From: {request.value('from')}",
            f"To: {to}",
            f"Call-ID: {request.value('call-id')}",
            f"CSeq: {request.value('cseq')}",
        ]
        lines += [f"{name}: {value}" for name, value in extra]
        lines.append("Content-Length: 0")
        self.responses.append((status, reason))
        return "\r\n".join(lines) + "\r\n\r\n"
