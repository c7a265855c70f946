"""The FastAPI application: routers per resource, state set by the service that hosts it."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from services.api.instances import InstanceDirectory
from services.api.routers import health, services
from shared.service import package_version

_STATUS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EchoDesk Voice</title>
<style>body{font:15px system-ui,sans-serif;margin:2rem;max-width:52rem}
table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}
.up{color:#080}.down{color:#b00}</style></head>
<body><h1>EchoDesk Voice</h1><p>Service instances, from their heartbeats:</p>
<table id="s"><thead><tr><th>service</th><th>instance</th><th>state</th><th>load</th></tr></thead>
<tbody></tbody></table>
<script>
async function refresh() {
  const rows = await (await fetch('/v1/services')).json();
  document.querySelector('#s tbody').replaceChildren(...rows.map(r => {
    const tr = document.createElement('tr');
    const cells = [r.service, r.instance_id, r.alive ? r.state : 'gone',
                   r.capacity ? `${r.active}/${r.capacity}` : ''];
    for (const text of cells) {
      const td = document.createElement('td'); td.textContent = text; tr.append(td);
    }
    tr.className = r.alive ? 'up' : 'down';
    return tr;
  }));
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


def create_app(instances: InstanceDirectory, ready: Callable[[], bool]) -> FastAPI:
    app = FastAPI(title="EchoDesk Voice API", version=package_version())
    app.state.instances = instances
    app.state.ready = ready
    app.include_router(health.router)
    app.include_router(services.router)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_STATUS_PAGE)

    return app
