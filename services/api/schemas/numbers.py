"""``/v1/numbers/normalize``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.numbers import NumberKind


class NormalizedNumberOut(BaseModel):
    input: str
    number: str = Field(description="E.164 for phone numbers; the digits as dialed for extensions")
    e164: str | None = Field(description="The E.164 form, or null for an extension or service code")
    valid: bool = Field(description="A number that exists in the numbering plan (not only possible)")
    kind: NumberKind
    region: str | None = Field(description="ISO 3166 region of the number, when known")
