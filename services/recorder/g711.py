"""G.711 mu-law and A-law to 16-bit linear PCM (ITU-T G.711), by 256-entry lookup tables for numpy.

The media worker has its own G.711 module (it translates between the laws without decoding); services
do not import each other, and the recorder only ever decodes, so the two expansions live here too.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


def _ulaw(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def _alaw(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    magnitude = magnitude + 8 if segment == 0 else (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


_TABLES: Final[dict[str, Samples]] = {
    "PCMU/8000": np.array([_ulaw(code) for code in range(256)], dtype=np.int16),
    "PCMA/8000": np.array([_alaw(code) for code in range(256)], dtype=np.int16),
}

#: Codecs the recorder can write (sample rate of each): G.711 is what the gateway relays to carriers.
SUPPORTED: Final = {name: 8000 for name in _TABLES}


def decode(codec: str, payload: bytes) -> Samples:
    """Linear samples of a G.711 payload; KeyError for a codec not in :data:`SUPPORTED`."""
    table = _TABLES[codec]
    return table[np.frombuffer(payload, dtype=np.uint8)]


def supported(codec: str) -> bool:
    return codec in _TABLES


__all__ = ["SUPPORTED", "Samples", "decode", "supported"]
