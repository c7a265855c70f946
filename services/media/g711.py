"""G.711 (ITU-T G.711, RFC 3551 section 4.5.14): mu-law and A-law by table.

A bridge between a PCMU leg and a PCMA leg needs no decoding: every 8-bit code of one law maps to
one code of the other, so the conversion is ``bytes.translate`` with a 256-byte table (the tables
are built once from the linear conversions below, as Sun's reference g711.c computes them).
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
import numpy.typing as npt

_BIAS: Final = 0x84
_CLIP: Final = 8159
_ULAW_SEGMENTS: Final = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENTS: Final = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def ulaw_to_linear(code: int) -> int:
    """One mu-law code to a 16-bit sample."""
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + _BIAS) << ((code & 0x70) >> 4)
    return _BIAS - magnitude if code & 0x80 else magnitude - _BIAS


def linear_to_ulaw(sample: int) -> int:
    """One 16-bit sample to mu-law (14-bit magnitude, biased, segment and mantissa)."""
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _CLIP) + (_BIAS >> 2)
    segment = _segment(value, _ULAW_SEGMENTS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def alaw_to_linear(code: int) -> int:
    """One A-law code to a 16-bit sample."""
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def linear_to_alaw(sample: int) -> int:
    """One 16-bit sample to A-law (13-bit magnitude, segment and mantissa, even bits inverted)."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = _segment(value, _ALAW_SEGMENTS)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return code ^ mask


#: ``payload.translate(ULAW_TO_ALAW)`` turns PCMU into PCMA; the other table the reverse.
ULAW_TO_ALAW: Final = bytes(linear_to_alaw(ulaw_to_linear(code)) for code in range(256))
ALAW_TO_ULAW: Final = bytes(linear_to_ulaw(alaw_to_linear(code)) for code in range(256))


def translation(source: str, target: str) -> bytes | None:
    """The table from one G.711 law to the other by encoding name, None when the payload passes as it
    is (the same encoding); raises ValueError when the two differ and are not both G.711."""
    names = (source.upper(), target.upper())
    if names[0] == names[1]:
        return None
    if names == ("PCMU", "PCMA"):
        return ULAW_TO_ALAW
    if names == ("PCMA", "PCMU"):
        return ALAW_TO_ULAW
    raise ValueError(f"{source} -> {target} needs transcoding: a table maps only PCMU and PCMA")


@functools.cache
def decoding_table(encoding: str) -> npt.NDArray[np.int16]:
    """Code -> 16-bit sample for PCMU or PCMA: ``table[np.frombuffer(payload, np.uint8)]`` decodes a
    packet in one lookup (the transcoding path, :mod:`services.media.transcode`)."""
    decode = ulaw_to_linear if encoding.upper() == "PCMU" else alaw_to_linear
    return np.array([decode(code) for code in range(256)], dtype=np.int16)


@functools.cache
def encoding_table(encoding: str) -> npt.NDArray[np.uint8]:
    """16-bit sample (as its unsigned bit pattern) -> code for PCMU or PCMA: every one of the 65536
    samples is encoded once, so a packet is encoded in one lookup. Built on first use (about 0.1 s)."""
    encode = linear_to_ulaw if encoding.upper() == "PCMU" else linear_to_alaw
    samples = range(65536)
    return np.array([encode(s - 65536 if s > 32767 else s) for s in samples], dtype=np.uint8)


__all__ = [
    "ALAW_TO_ULAW",
    "ULAW_TO_ALAW",
    "alaw_to_linear",
    "decoding_table",
    "encoding_table",
    "linear_to_alaw",
    "linear_to_ulaw",
    "translation",
    "ulaw_to_linear",
]
