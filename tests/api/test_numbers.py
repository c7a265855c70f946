"""``/v1/numbers/normalize`` with the seed guide's table, and 422 with the reason otherwise."""

from __future__ import annotations

import pytest

from tests.api.conftest import Tenancy

#: The seed guide's table. Its landline example is not in today's Georgian numbering plan (Tbilisi
#: is 032 2..): it still gets the E.164 form the table asks for, and is honestly marked not valid.
SEED_TABLE = [
    ("555123456", "+995555123456", True, "mobile"),
    ("22123456", "+99522123456", False, "unknown"),
    ("0555123456", "+995555123456", True, "mobile"),
    ("00995555123456", "+995555123456", True, "mobile"),
    ("+995555123456", "+995555123456", True, "mobile"),
]


@pytest.mark.parametrize(("typed", "e164", "valid", "kind"), SEED_TABLE)
async def test_the_seed_table(acme: Tenancy, typed: str, e164: str, valid: bool, kind: str) -> None:
    response = await acme.client.get("/v1/numbers/normalize", params={"number": typed})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "input": typed,
        "number": e164,
        "e164": e164,
        "valid": valid,
        "kind": kind,
        "region": "GE",
    }


async def test_a_tbilisi_landline(acme: Tenancy) -> None:
    body = (await acme.client.get("/v1/numbers/normalize", params={"number": "032 2 123456"})).json()
    assert (body["e164"], body["valid"], body["kind"]) == ("+995322123456", True, "fixed_line")


async def test_region_extensions_and_service_codes(acme: Tenancy) -> None:
    german = (
        await acme.client.get("/v1/numbers/normalize", params={"number": "030 123456", "region": "de"})
    ).json()
    assert (german["e164"], german["region"]) == ("+4930123456", "DE")
    extension = (await acme.client.get("/v1/numbers/normalize", params={"number": "100"})).json()
    assert (extension["number"], extension["e164"], extension["kind"]) == ("100", None, "extension")
    echo = (await acme.client.get("/v1/numbers/normalize", params={"number": "*43"})).json()
    assert echo["kind"] == "service_code"


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"number": "555-CALL-NOW"}, "number", "letter"),
        ({"number": "+99555+123"}, "number", "'+'"),
        ({"number": ""}, "number", ""),
        ({"number": "555123456", "region": "XX"}, "region", "region"),
        ({"number": "555123456", "region": "GEO"}, "region", ""),
        ({}, "number", "required"),
    ],
)
async def test_what_is_not_a_number_is_422_with_the_reason(
    acme: Tenancy, params: dict[str, str], field: str, reason: str
) -> None:
    response = await acme.client.get("/v1/numbers/normalize", params=params)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["field"] == field
    assert reason.lower() in error["msg"].lower()
