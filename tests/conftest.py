"""Test-suite wide fixtures and the rule that CI never skips a real peer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from shared.bus import Bus
from tests.support.nats import NatsServer
from tests.support.tools import IN_CI

#: Markers of tests that need a real peer; in CI their skip is a failure.
REAL_PEER_MARKERS = ("needs_nats", "needs_sipp", "needs_chromium", "needs_postgres")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    report = yield
    if IN_CI and getattr(report, "skipped", False):
        needs = [m for m in REAL_PEER_MARKERS if item.get_closest_marker(m)]
        if needs or "rfc4475" in item.nodeid:
            report.outcome = "failed"  # type: ignore[attr-defined]
            report.longrepr = (
                f"skipped in CI although it needs a real peer ({', '.join(needs)}): {report.longrepr}"  # type: ignore[attr-defined]
            )
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "nats_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_nats)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    connection = await Bus.connect(nats_server.url, name="test", timeout=10)
    await connection.ensure_streams()
    await connection.ensure_buckets()
    try:
        yield connection
    finally:
        await connection.close()
