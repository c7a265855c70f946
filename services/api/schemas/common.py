"""Field types the resources share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.numbers import is_valid_region


class Body(BaseModel):
    """A request body: unknown fields are an error (a typo must not be silently ignored), and so is
    text no column can hold: NUL characters (PostgreSQL refuses them) and lone UTF-16 surrogates
    (which JSON can spell, ``"\\ud800"``, but UTF-8 cannot)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                if "\x00" in text:
                    raise ValueError("must not contain NUL characters")
                if not _is_utf8(text):
                    raise ValueError("must be valid Unicode text (no lone surrogates)")
        return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _secret_length(low: int, high: int) -> Callable[[SecretStr], SecretStr]:
    def check(value: SecretStr) -> SecretStr:
        length = len(value.get_secret_value())
        if not low <= length <= high:
            raise ValueError(f"must be {low} to {high} characters long")
        return value

    return check


def _region(value: str) -> str:
    value = value.upper()
    if not is_valid_region(value):
        raise ValueError(f"{value!r} is not an ISO 3166 region phone numbers are known for (GE, DE, US, ...)")
    return value


#: Write-only secrets: accepted in requests, never in a response (``writeOnly`` in the OpenAPI).
Secret = Annotated[SecretStr, AfterValidator(_secret_length(1, 256))]
Region = Annotated[
    str,
    Field(pattern=r"^[A-Za-z]{2}$", examples=["GE"], description="ISO 3166 region for national numbers"),
    AfterValidator(_region),
]
#: An agent's SIP password: only its digest hashes are kept.
AgentPassword = Annotated[SecretStr, AfterValidator(_secret_length(8, 128))]
