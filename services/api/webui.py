"""The web UI the api serves: one page each for the softphone (/), the call log (/calls), the
trunks (/trunks) and the services' heartbeats (/status), their stylesheet and their scripts
under /ui/.

The pages and the stylesheet are files of this package (``web/pages``, ``web/style.css``); the
scripts are built from ``web/src`` by esbuild (``make web``) into ``web/dist``, or into the
directory ``ECHODESK_API_WEB_BUNDLE_DIR`` names. A page whose script is not built is answered with
a 503 that says how to build it, rather than a page that silently does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse, Response

from shared.settings import ApiSettings

WEB_DIR = Path(__file__).parent / "web"
PAGES_DIR = WEB_DIR / "pages"

#: URL path -> (page file, the script it loads; None: a page without a bundle).
PAGES: dict[str, tuple[str, str | None]] = {
    "/": ("softphone.html", "softphone.js"),
    "/calls": ("calls.html", "calls.js"),
    "/trunks": ("trunks.html", "trunks.js"),
    "/status": ("status.html", None),
}

_ASSET = re.compile(r"^[a-z]+\.(js|js\.map|css)$")
#: Scripts change with each build under the same name: browsers revalidate rather than cache.
_NO_CACHE = {"Cache-Control": "no-cache"}

_NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>EchoDesk Voice</title></head><body style="font:15px system-ui,sans-serif;margin:2rem">
<h1>The web UI is not built</h1>
<p>Its scripts are missing from the api's bundle directory. Run <code>make web</code> (or
<code>npm ci &amp;&amp; npm run build:web</code>) and reload; <a href="/status">the services page</a>
works without them.</p></body></html>
"""


def bundle_dir(settings: ApiSettings) -> Path:
    return Path(settings.web_bundle_dir) if settings.web_bundle_dir else WEB_DIR / "dist"


def install(app: FastAPI, settings: ApiSettings) -> None:
    scripts = bundle_dir(settings)

    def page_route(page: str, script: str | None) -> Callable[[], Awaitable[Response]]:
        async def serve() -> Response:
            if script is not None and not (scripts / script).is_file():
                return HTMLResponse(_NOT_BUILT, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
            return FileResponse(PAGES_DIR / page, media_type="text/html", headers=_NO_CACHE)

        return serve

    for path, (page, script) in PAGES.items():
        app.add_api_route(path, page_route(page, script), methods=["GET"], include_in_schema=False)

    @app.get("/ui/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if not _ASSET.fullmatch(name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {name}")
        found = WEB_DIR / name if name.endswith(".css") else scripts / name
        if not found.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {name}")
        return FileResponse(found, headers=_NO_CACHE)
