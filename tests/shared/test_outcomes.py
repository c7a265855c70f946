"""Every failed call says what happened in the old product's words."""

from __future__ import annotations

import pytest

from shared.events import CallStatus, EndCause
from shared.outcomes import for_cause, for_sip_status


@pytest.mark.parametrize(
    ("status", "message", "call_status"),
    [
        # Issue 5's list, from the original product.
        (404, "Number not found or invalid", CallStatus.FAILED),
        (486, "Line busy", CallStatus.BUSY),
        (603, "Call declined", CallStatus.FAILED),
        (408, "No answer / Request timeout", CallStatus.NO_ANSWER),
        (480, "Temporarily unavailable", CallStatus.FAILED),
        (487, "Request terminated", CallStatus.CANCELED),
        (401, "Authentication with the carrier failed", CallStatus.FAILED),
        (407, "Authentication with the carrier failed", CallStatus.FAILED),
        (403, "Call forbidden", CallStatus.FAILED),
        (488, "No common audio codec", CallStatus.FAILED),
        (500, "Carrier error, try again later", CallStatus.FAILED),
        (503, "Carrier error, try again later", CallStatus.FAILED),
    ],
)
def test_the_old_products_messages(status: int, message: str, call_status: CallStatus) -> None:
    outcome = for_sip_status(status)
    assert (outcome.message, outcome.status) == (message, call_status)


@pytest.mark.parametrize("status", range(300, 700))
def test_every_final_status_has_words(status: int) -> None:
    outcome = for_sip_status(status)
    assert outcome.message
    assert outcome.status in (CallStatus.FAILED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED)


def test_dial_plan_refusal_names_the_rule() -> None:
    outcome = for_cause(EndCause.DIALPLAN_REFUSED, "premium-rate numbers (+99590) are blocked")
    assert outcome.message == "Call not allowed: premium-rate numbers (+99590) are blocked"
    assert outcome.status is CallStatus.FAILED


@pytest.mark.parametrize("cause", list(EndCause))
def test_every_cause_has_words(cause: EndCause) -> None:
    assert for_cause(cause).message
