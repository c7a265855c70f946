"""The web UI as the api serves it: each page, its script from the bundle directory, nothing
outside it, a clear 503 when the scripts are not built, and the SIP status messages the softphone
shows, which must be shared/outcomes.py's own (the browser keeps no table of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.db import Database
from services.api.webui import PAGES
from shared.outcomes import for_sip_status
from tests.api.conftest import harness
from tests.support.browser import web_ui_bundle


@pytest.fixture
def bundle() -> Path:
    return web_ui_bundle()


async def test_every_page_and_its_script_are_served(database: Database, bundle: Path) -> None:
    api = await harness(database, web_bundle_dir=str(bundle))
    client = api.client(None)
    try:
        for path, (_page, script) in PAGES.items():
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text[:200])
            assert response.headers["content-type"].startswith("text/html")
            if script is not None:
                assert f'src="/ui/{script}"' in response.text
                js = await client.get(f"/ui/{script}")
                assert js.status_code == 200
                assert "javascript" in js.headers["content-type"]
                assert len(js.content) > 1000
        css = await client.get("/ui/style.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        softphone = (await client.get("/ui/softphone.js")).text
        # SIP.js is bundled in, with the options the softphone must set.
        assert "iceGatheringTimeout" in softphone
        assert "echoCancellation" in softphone
    finally:
        await api.close()


@pytest.mark.parametrize(
    "name", ["nothing.js", "..%2Fapp.py", "%2E%2E%2F%2E%2E%2Fsettings.py", "softphone.ts", "index.html"]
)
async def test_assets_outside_the_bundle_are_not_served(database: Database, bundle: Path, name: str) -> None:
    api = await harness(database, web_bundle_dir=str(bundle))
    try:
        response = await api.client(None).get(f"/ui/{name}")
        assert response.status_code == 404, response.text[:200]
    finally:
        await api.close()


async def test_a_page_without_its_built_script_says_how_to_build_it(
    database: Database, tmp_path: Path
) -> None:
    api = await harness(database, web_bundle_dir=str(tmp_path))
    client = api.client(None)
    try:
        for path in ("/", "/calls", "/trunks"):
            response = await client.get(path)
            assert response.status_code == 503
            assert "make web" in response.text
        # The services page has no script to build.
        assert (await client.get("/status")).status_code == 200
    finally:
        await api.close()


async def test_sip_outcomes_are_shared_outcomes_for_every_final_status(database: Database) -> None:
    api = await harness(database)
    try:
        response = await api.client(None).get("/v1/sip-outcomes")
        assert response.status_code == 200
        table = response.json()
    finally:
        await api.close()
    by_status = {row["sip_status"]: row["message"] for row in table["statuses"]}
    by_class = {row["sip_class"]: row["message"] for row in table["classes"]}
    assert by_status[486] == "Line busy"
    assert by_status[404] == "Number not found or invalid"
    # The softphone's lookup (its status, else its class) gives what signaling writes in the log.
    for status in range(300, 700):
        shown = by_status.get(status, by_class.get(status // 100))
        assert shown == for_sip_status(status).message, status
