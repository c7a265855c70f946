"""The Via header field (RFC 3261 20.42, 18.2.1) with rport (RFC 3581)."""

from __future__ import annotations

import re
from typing import Final

from services.signaling.sip.errors import SipParseError
from services.signaling.sip.grammar import (
    WSP,
    find_wsp,
    is_host,
    is_ipv4,
    is_ipv6,
    is_token,
    parse_port,
    parse_uint,
)
from services.signaling.sip.parameters import EMPTY_PARAMETERS, Parameters, parse_header_parameters

#: Branch prefix of RFC 3261 transaction identifiers (8.1.1.7).
MAGIC_COOKIE: Final = "z9hG4bK"

# The usual shape, read in one match: "SIP/2.0/" transport SP host [":" port], then ";" or the end.
_PLAIN_VIA_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?(?=;|\Z)"
)


class Via:
    """One via-parm: sent-protocol, sent-by and parameters. Immutable.

    ``transport`` is upper case (UDP, TCP, TLS, SCTP, WS, WSS or any token, RFC 4475 3.1.1.10).
    ``port`` is None when the sent-by had none.
    """

    __slots__ = ("_host", "_params", "_port", "_protocol", "_transport", "_version")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: Parameters = EMPTY_PARAMETERS,
        *,
        protocol: str = "SIP",
        version: str = "2.0",
    ) -> None:
        self._transport = transport
        self._host = host
        self._port = port
        self._params = params
        self._protocol = protocol
        self._version = version

    @property
    def transport(self) -> str:
        return self._transport

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def params(self) -> Parameters:
        return self._params

    @property
    def protocol(self) -> str:
        return self._protocol

    @property
    def version(self) -> str:
        return self._version

    @property
    def sent_by(self) -> str:
        return self._host if self._port is None else f"{self._host}:{self._port}"

    @property
    def branch(self) -> str | None:
        return self._params.get("branch")

    @property
    def received(self) -> str | None:
        return self._params.get("received")

    @property
    def rport(self) -> int | None:
        """The port a server filled in (RFC 3581 4); None when absent or still empty."""
        value = self._params.get("rport")
        return None if value is None else int(value)

    @property
    def rport_requested(self) -> bool:
        """True when the client asked for rport (RFC 3581 3), with or without a value."""
        return "rport" in self._params

    @property
    def maddr(self) -> str | None:
        return self._params.get("maddr")

    @property
    def ttl(self) -> int | None:
        value = self._params.get("ttl")
        return None if value is None else int(value)

    def with_param(self, name: str, value: str | None = None) -> Via:
        """A copy with ``name`` set, for the received and rport a server adds (18.2.1, RFC 3581 4)."""
        return Via(
            self._transport,
            self._host,
            self._port,
            self._params.with_param(name, value),
            protocol=self._protocol,
            version=self._version,
        )

    def with_params(self, params: Parameters) -> Via:
        """A copy with ``params`` instead of this one's (values the caller already checked)."""
        return Via(
            self._transport, self._host, self._port, params, protocol=self._protocol, version=self._version
        )

    def __str__(self) -> str:
        return f"{self._protocol}/{self._version}/{self._transport} {self.sent_by}{self._params}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (
            self._transport == other._transport
            and self._host.lower() == other._host.lower()
            and self._port == other._port
            and self._params == other._params
            and self._protocol == other._protocol
            and self._version == other._version
        )

    def __hash__(self) -> int:
        return hash((self._transport, self._host.lower(), self._port, self.branch))


def parse_via(value: str) -> Via:
    """One via-parm (RFC 3261 25.1), value free of surrounding LWS. Raises SipParseError.

    via-parm = sent-protocol LWS sent-by *( SEMI via-params ); sent-protocol = protocol-name SLASH
    protocol-version SLASH transport, with SLASH = SWS "/" SWS (RFC 4475 3.1.1.1 folds around it).
    """
    m = _PLAIN_VIA_RE.match(value)
    if m is not None:
        transport, host, port_text = m.group(1, 2, 3)
        if is_host(host):
            port = None
            if port_text is not None:
                port = int(port_text)
                if port > 65535:
                    raise SipParseError("Bad Via header")
            rest = value[m.end() :]
            params = _params(rest) if rest else EMPTY_PARAMETERS
            if params:
                _check_params(params)
            return Via(transport.upper(), host, port, params)
    semi = value.find(";")
    head = value if semi < 0 else value[:semi]
    if head.startswith("SIP/2.0/"):
        protocol = "SIP"
        version = "2.0"
        rest = head[8:]
    else:
        parts = head.split("/", 2)
        if len(parts) != 3:
            raise SipParseError("Bad Via header")
        protocol = parts[0].strip(WSP).upper()
        version = parts[1].strip(WSP)
        rest = parts[2].lstrip(WSP)
        if not is_token(protocol) or not is_token(version):
            raise SipParseError("Bad Via header")
    gap = find_wsp(rest)
    if gap <= 0:
        raise SipParseError("Bad Via header")
    transport = rest[:gap]
    if not is_token(transport):
        raise SipParseError("Bad Via header")
    host, port = _sent_by(rest[gap:].strip(WSP))
    params = EMPTY_PARAMETERS if semi < 0 else _params(value[semi:])
    if params:
        _check_params(params)
    return Via(transport.upper(), host, port, params, protocol=protocol, version=version)


def _params(text: str) -> Parameters:
    try:
        return parse_header_parameters(text)
    except SipParseError:
        raise SipParseError("Bad Via header") from None


def _sent_by(text: str) -> tuple[str, int | None]:
    # sent-by = host [ COLON port ], COLON = SWS ":" SWS
    if text[:1] == "[":
        close = text.find("]")
        if close < 0:
            raise SipParseError("Bad Via header")
        host = text[: close + 1]
        rest = text[close + 1 :].lstrip(WSP)
    else:
        colon = text.find(":")
        host = (text if colon < 0 else text[:colon]).rstrip(WSP)
        rest = "" if colon < 0 else text[colon:]
    if not is_host(host):
        raise SipParseError("Bad Via header")
    if not rest:
        return host, None
    if rest[0] != ":":
        raise SipParseError("Bad Via header")
    try:
        return host, parse_port(rest[1:].strip(WSP))
    except SipParseError:
        raise SipParseError("Bad Via header") from None


def _check_params(params: Parameters) -> None:
    # via-params of RFC 3261 25.1 and response-port of RFC 3581; anything else is a via-extension.
    for name, value in params.pairs:
        key = name.lower()
        if key == "branch":
            ok = value is not None and is_token(value)
        elif key == "received":
            # IPv4address / IPv6address; the bracketed form is common enough to accept as well.
            ok = value is not None and (is_ipv4(value) or is_ipv6(value.removeprefix("[").removesuffix("]")))
        elif key == "rport":
            ok = value is None or parse_uint(value, 65535) is not None
        elif key == "ttl":
            ok = value is not None and parse_uint(value, 255) is not None
        elif key == "maddr":
            ok = value is not None and is_host(value)
        else:
            continue
        if not ok:
            raise SipParseError("Bad Via header")
