"""Phone number normalization to E.164 (ITU-T E.164), Georgia by default.

The original product's number table (seed/SIP_SETUP_GUIDE.md) is a requirement:
``555123456``, ``0555123456``, ``00995555123456`` and ``+995555123456`` are all ``+995555123456``;
``22123456`` is ``+99522123456``. Short digit strings are internal extensions and ``*43``-style
strings are service codes (the echo line); neither is turned into a phone number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

DEFAULT_REGION = "GE"
#: Digit strings up to this long are extensions (agents dial each other by ``100``).
DEFAULT_MAX_EXTENSION_DIGITS = 6
#: E.164 allows at most 15 digits after the ``+`` (ITU-T E.164 section 6.1).
_MAX_E164_DIGITS = 15
#: What people type around digits and what we tolerate: spaces, dashes, dots, slashes, brackets.
_SEPARATORS = re.compile(r"[\s\-./()\u00a0\u2010-\u2015]")
_SERVICE_CODE = re.compile(r"^[*#][0-9*#]{1,15}$")


class NumberKind(StrEnum):
    MOBILE = "mobile"
    FIXED_LINE = "fixed_line"
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
    TOLL_FREE = "toll_free"
    PREMIUM_RATE = "premium_rate"
    SHARED_COST = "shared_cost"
    VOIP = "voip"
    PERSONAL_NUMBER = "personal_number"
    PAGER = "pager"
    UAN = "uan"
    VOICEMAIL = "voicemail"
    UNKNOWN = "unknown"
    EXTENSION = "extension"
    SERVICE_CODE = "service_code"


_KINDS = {
    PhoneNumberType.MOBILE: NumberKind.MOBILE,
    PhoneNumberType.FIXED_LINE: NumberKind.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberKind.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE: NumberKind.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: NumberKind.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST: NumberKind.SHARED_COST,
    PhoneNumberType.VOIP: NumberKind.VOIP,
    PhoneNumberType.PERSONAL_NUMBER: NumberKind.PERSONAL_NUMBER,
    PhoneNumberType.PAGER: NumberKind.PAGER,
    PhoneNumberType.UAN: NumberKind.UAN,
    PhoneNumberType.VOICEMAIL: NumberKind.VOICEMAIL,
}

_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


class NumberError(ValueError):
    """The input cannot be a phone number; ``reason`` says why in words a person reads."""

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(f"{raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NormalizedNumber:
    #: E.164 (``+995555123456``) for phone numbers; the digits as dialed for extensions/service codes.
    number: str
    valid: bool
    kind: NumberKind
    #: ISO 3166 region of the number (``GE``), when known.
    region: str | None

    @property
    def is_phone_number(self) -> bool:
        return self.number.startswith("+")


#: Normalized numbers by (text, region, extension digits), emptied when full. Each call normalizes
#: the number dialed (inbound: the caller's and the DIDs too), and the same numbers come back;
#: phonenumbers takes ~55 us of CPU per parse, a look-up well under one.
_CACHE: dict[tuple[str, str, int], NormalizedNumber] = {}
_CACHE_ENTRIES = 4096


def normalize(
    raw: str,
    region: str = DEFAULT_REGION,
    *,
    max_extension_digits: int = DEFAULT_MAX_EXTENSION_DIGITS,
) -> NormalizedNumber:
    """Normalize what a person typed or a carrier sent; raise :class:`NumberError` for garbage."""
    if not isinstance(raw, str):
        raise NumberError(repr(raw), "not text")
    key = (raw, region, max_extension_digits)
    number = _CACHE.get(key)
    if number is None:
        # Failures are not kept: garbage from outside must not fill the table.
        number = _normalize(raw, region, max_extension_digits)
        if len(_CACHE) >= _CACHE_ENTRIES:
            _CACHE.clear()
        _CACHE[key] = number
    return number


def _normalize(raw: str, region: str, max_extension_digits: int) -> NormalizedNumber:
    text = raw.strip()
    if not text:
        raise NumberError(raw, "empty")
    if len(text) > 64:
        raise NumberError(raw[:64], "too long to be a phone number")
    if _SERVICE_CODE.match(text):
        return NormalizedNumber(text, True, NumberKind.SERVICE_CODE, None)
    compact = _SEPARATORS.sub("", text)
    _check_characters(raw, compact)
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    if not digits:
        raise NumberError(raw, "no digits")
    if not digits.isascii() or not digits.isdigit():
        raise NumberError(raw, "a '+' may only stand at the start")
    if not plus and len(digits) <= max_extension_digits and not digits.startswith("0"):
        return NormalizedNumber(digits, True, NumberKind.EXTENSION, None)
    region = region.upper()
    parsed = _parse(raw, "+" + digits if plus else digits, region)
    if not plus and not phonenumbers.is_possible_number(parsed):
        # "995555123456": the country code typed without '+' or '00'; take it when that reading
        # makes a possible number and the national one does not.
        country = phonenumbers.country_code_for_region(region)
        if country and digits.startswith(str(country)):
            international = _try_parse("+" + digits)
            if international is not None and phonenumbers.is_possible_number(international):
                parsed = international
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) - 1 > _MAX_E164_DIGITS:
        raise NumberError(raw, f"too long: E.164 numbers have at most {_MAX_E164_DIGITS} digits")
    valid = phonenumbers.is_valid_number(parsed)
    kind = _KINDS.get(phonenumbers.number_type(parsed), NumberKind.UNKNOWN) if valid else NumberKind.UNKNOWN
    # An invalid number has no region of its own; its country code still names one (+995 -> GE).
    where = phonenumbers.region_code_for_number(parsed) or phonenumbers.region_code_for_country_code(
        parsed.country_code or 0
    )
    return NormalizedNumber(e164, valid, kind, None if where == "ZZ" else where)


def _check_characters(raw: str, compact: str) -> None:
    for ch in compact:
        if (ch.isascii() and ch.isdigit()) or ch == "+":
            continue
        if ch.isalpha():
            raise NumberError(raw, f"contains the letter {ch!r}; dial digits only")
        raise NumberError(raw, f"contains {ch!r}, which is not part of a phone number")


def _parse(raw: str, text: str, region: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise NumberError(raw, _PARSE_ERRORS.get(exc.error_type, "not a phone number")) from None


def _try_parse(text: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, None)
    except NumberParseException:
        return None


def is_valid_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS
