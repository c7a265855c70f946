"""A UDP relay on loopback that drops a share of datagrams both ways, to prove retransmissions."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay, inbound: bool) -> None:
        self.relay = relay
        self.inbound = inbound
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.forward(data, addr, self.inbound)


@dataclass
class LossyRelay:
    """Clients send to :attr:`port`; the relay forwards to ``server`` and back, dropping ``loss``."""

    server: tuple[str, int]
    loss: float = 0.2
    seed: int = 20
    port: int = 0
    forwarded: int = 0
    dropped: int = 0
    _rng: random.Random = field(init=False)
    _front: _Side | None = None
    _back: _Side | None = None
    _client: tuple[str, int] | None = None

    async def start(self) -> LossyRelay:
        self._rng = random.Random(self.seed)
        loop = asyncio.get_running_loop()
        front_t, self._front = await loop.create_datagram_endpoint(
            lambda: _Side(self, inbound=True), local_addr=("127.0.0.1", 0)
        )
        _, self._back = await loop.create_datagram_endpoint(
            lambda: _Side(self, inbound=False), local_addr=("127.0.0.1", 0)
        )
        self.port = front_t.get_extra_info("sockname")[1]
        return self

    def forward(self, data: bytes, addr: tuple[str, int], inbound: bool) -> None:
        if inbound:
            self._client = addr
        if self._rng.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1
        if inbound and self._back is not None and self._back.transport is not None:
            self._back.transport.sendto(data, self.server)
        elif not inbound and self._client is not None and self._front and self._front.transport:
            self._front.transport.sendto(data, self._client)

    def close(self) -> None:
        for side in (self._front, self._back):
            if side is not None and side.transport is not None:
                side.transport.close()
