"""``/v1/sip-outcomes``: shared/outcomes.py's table, so the softphone shows the message signaling
writes into the call log for the same status instead of keeping a second table in the browser."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.schemas.outcomes import SipClassOutcomeOut, SipOutcomeOut, SipOutcomes
from shared.outcomes import sip_class_outcomes, sip_status_outcomes

router = APIRouter(prefix="/v1", tags=["numbers"])


@router.get("/sip-outcomes")
async def list_sip_outcomes() -> SipOutcomes:
    """The human message of every final SIP status; no key needed (it holds no tenant's data)."""
    return SipOutcomes(
        statuses=[
            SipOutcomeOut(sip_status=code, status=o.status, cause=o.cause, message=o.message)
            for code, o in sip_status_outcomes()
        ],
        classes=[
            SipClassOutcomeOut(sip_class=code, status=o.status, cause=o.cause, message=o.message)
            for code, o in sip_class_outcomes()
        ],
    )
