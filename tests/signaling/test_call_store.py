"""The call store (b2bua/call_store.py): changes gathered, written once as they stand, deletes, and
writes kept for later when NATS is away. The bucket is an in-memory stand-in (this module's unit
tests); the store against a real nats-server is in tests/test_signaling_restart.py."""

from __future__ import annotations

import asyncio

from services.signaling.b2bua.call_store import CallStore


class Bucket:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.deletes: list[str] = []
        self.down = False
        self.in_flight = 0
        self.most_in_flight = 0

    async def put(self, key: str, value: bytes) -> int:
        if self.down:
            raise ConnectionError("nats: connection closed")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        self.values[key] = value
        self.puts.append(key)
        return len(self.puts)

    async def delete(self, key: str) -> bool:
        if self.down:
            raise ConnectionError("nats: connection closed")
        self.values.pop(key, None)
        self.deletes.append(key)
        return True


async def test_changes_are_gathered_and_each_call_written_once_as_it_stands() -> None:
    state = {"c1": b"v1"}
    store = CallStore("sig-1", state.get, delay_s=0.02)
    bucket = Bucket()
    writer = asyncio.ensure_future(store.run(bucket))
    try:
        for version in range(5):
            state["c1"] = f"v{version}".encode()
            store.changed("c1")
        await asyncio.sleep(0)
        await store.flushed(1.0)
        assert bucket.values == {"sig-1.c1": b"v4"}
        assert bucket.puts == ["sig-1.c1"]
        store.changed("c1")  # nothing new in it: not written again
        await asyncio.sleep(0.05)
        assert bucket.puts == ["sig-1.c1"]
        del state["c1"]  # the call ended
        store.changed("c1")
        await asyncio.sleep(0.05)
        assert bucket.values == {}
        assert bucket.deletes == ["sig-1.c1"]
        store.changed("c1")  # ended twice: deleted once
        store.changed("never-written")  # ended before it was ever written: nothing to delete
        await asyncio.sleep(0.05)
        assert bucket.deletes == ["sig-1.c1"]
    finally:
        writer.cancel()


async def test_writes_wait_while_nats_is_away_and_go_out_when_it_is_back() -> None:
    state = {"c1": b"v1", "c2": b"v1"}
    store = CallStore("sig-1", state.get, delay_s=0.0)
    bucket = Bucket()
    bucket.down = True
    writer = asyncio.ensure_future(store.run(bucket))
    try:
        store.changed("c1")
        store.changed("c2")
        await asyncio.sleep(0.1)
        assert bucket.values == {}
        state["c2"] = b"v2"
        bucket.down = False
        await asyncio.sleep(1.2)  # the retry comes after a second
        assert bucket.values == {"sig-1.c1": b"v1", "sig-1.c2": b"v2"}
    finally:
        writer.cancel()


async def test_inherited_snapshots_are_deleted_when_their_call_ends() -> None:
    store = CallStore("sig-1", lambda _call: None, delay_s=0.0)
    bucket = Bucket()
    bucket.values["sig-1.old"] = b"left by the previous incarnation"
    store.inherited("old")
    writer = asyncio.ensure_future(store.run(bucket))
    try:
        store.changed("old")
        await asyncio.sleep(0.05)
        assert bucket.values == {}
    finally:
        writer.cancel()


async def test_writes_in_flight_are_bounded() -> None:
    state = {f"c{n}": b"v" for n in range(200)}
    store = CallStore("sig-1", state.get, delay_s=0.0, concurrency=8)
    bucket = Bucket()
    writer = asyncio.ensure_future(store.run(bucket))
    try:
        for call in state:
            store.changed(call)
        await asyncio.sleep(0)
        await store.flushed(5.0)
        assert len(bucket.values) == 200
        assert bucket.most_in_flight == 8
    finally:
        writer.cancel()
