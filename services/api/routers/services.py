"""``/v1/services``: which service instances are up, from their heartbeats."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.api.instances import InstanceDirectory
from shared.heartbeat import InstanceState

router = APIRouter(prefix="/v1", tags=["services"])


class ServiceInstance(BaseModel):
    service: str
    instance_id: str
    version: str
    state: InstanceState
    alive: bool
    started_at: datetime
    last_seen: datetime
    active: int
    capacity: int


@router.get("/services")
async def list_services(request: Request) -> list[ServiceInstance]:
    directory: InstanceDirectory = request.app.state.instances
    return [
        ServiceInstance(
            service=beat.service,
            instance_id=beat.instance_id,
            version=beat.version,
            state=beat.state,
            alive=alive,
            started_at=beat.started_at,
            last_seen=beat.sent_at,
            active=beat.active,
            capacity=beat.capacity,
        )
        for beat, alive in directory.snapshot()
    ]
