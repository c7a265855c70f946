"""The FastAPI application: routers per resource, state set by the service that hosts it."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from services.api import errors, webui
from services.api.db import Database
from services.api.instances import InstanceDirectory
from services.api.publishing import ConfigPublisher
from services.api.recording_stores import RecordingStores
from services.api.routers import (
    agents,
    call_control,
    call_recording,
    calls,
    contacts,
    conversations,
    data_retention,
    events,
    health,
    keys,
    messages,
    numbers,
    outcomes,
    presence,
    recording_audio,
    recording_policy,
    recordings,
    services,
    tenant,
    trunks,
)
from services.api.routers import webhooks as webhook_routes
from services.api.webhooks import WebhookDispatcher
from shared.bus import Bus
from shared.service import package_version
from shared.settings import ApiSettings

DESCRIPTION = """Browser calling for the EchoDesk helpdesk: trunks (carriers), agents and what their
softphones need. Every `/v1` resource except `/v1/services`, `/v1/sip-outcomes` and signed recording
links needs an API key (`Authorization: Bearer edk_...`) and sees only its own tenant. See
docs/api.md; the web UI (docs/web-ui.md) is served at `/`."""


def create_app(
    settings: ApiSettings,
    db: Database,
    *,
    instances: InstanceDirectory | None = None,
    ready: Callable[[], bool] = lambda: True,
    publisher: ConfigPublisher | None = None,
    webhooks: WebhookDispatcher | None = None,
    bus: Bus | None = None,
) -> FastAPI:
    """The app over ``db``. ``ready`` is the host's own readiness (NATS connected, KV published,
    not draining); /readyz adds a database check. ``publisher`` is told about every trunk and
    agent change (None: changes wait in the database until a publisher runs). ``webhooks`` is woken
    when a subscription is resumed; ``bus`` feeds the live event streams (None: they are refused)."""
    app = FastAPI(title="EchoDesk Voice API", version=package_version(), description=DESCRIPTION)
    app.state.settings = settings
    app.state.db = db
    app.state.instances = instances or InstanceDirectory()
    app.state.ready = ready
    app.state.publisher = publisher
    app.state.webhooks = webhooks
    app.state.bus = bus
    #: Where recordings' audio is read from; the host closes it (its S3 client) when it stops.
    app.state.recording_stores = RecordingStores(settings)
    errors.install(app)
    for module in (
        health,
        services,
        tenant,
        recording_policy,
        data_retention,
        keys,
        trunks,
        agents,
        numbers,
        outcomes,
        calls,
        conversations,
        contacts,
        messages,
        call_recording,
        call_control,
        recordings,
        recording_audio,
        webhook_routes,
        events,
        presence,
    ):
        app.include_router(module.router)
    webui.install(app, settings)
    return app


def openapi_document() -> dict[str, object]:
    """The OpenAPI document, without a database or a bus (``echodesk docs`` writes it to docs/)."""
    settings = ApiSettings(database_url="sqlite+aiosqlite:///:memory:")
    return create_app(settings, Database(settings.database_url)).openapi()
