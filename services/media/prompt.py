"""The demo line's prompt: the audio an ``announcement`` session plays, made in code.

No recording lives in git. The built-in prompt is a chime computed here at start-up: four notes
rising (C5, E5, G5, C6, a major arpeggio a newcomer takes for "connected"), each a sine with a little
of its second and third harmonic, a 5 ms attack and an exponential decay, so the notes ring into
each other like a bell. It sits in the telephone band (300-3400 Hz, ITU-T G.712) and peaks near
-12 dBFS, loud enough to hear without clipping G.711.

A :class:`Prompt` holds 8 kHz 16-bit samples and hands out 20 ms frames in either G.711 law
(RFC 3551 section 4.5.14), encoded once per law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from services.media.g711 import linear_to_alaw, linear_to_ulaw

SAMPLE_RATE: Final = 8000
#: 20 ms of 8 kHz audio: one RTP packet (RFC 3551 section 4.2's default packetization for G.711).
FRAME_SAMPLES: Final = 160
#: The chime's notes (Hz), when each starts (s) and how long each rings (s).
CHIME_NOTES: Final = ((523.25, 0.0), (659.25, 0.18), (783.99, 0.36), (1046.50, 0.54))
CHIME_RING_S: Final = 0.9
CHIME_PEAK: Final = 8000

#: The code of a zero sample in each law (what a silent frame is made of).
SILENCE: Final = {"PCMU": bytes([linear_to_ulaw(0)]), "PCMA": bytes([linear_to_alaw(0)])}


@dataclass(frozen=True, eq=False)
class Prompt:
    """A prompt as 8 kHz signed 16-bit samples; :meth:`frames` encodes it for one G.711 law."""

    name: str
    samples: np.ndarray
    _encoded: dict[str, tuple[bytes, ...]] = field(default_factory=dict, repr=False)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def frames(self, encoding: str) -> tuple[bytes, ...]:
        """The prompt in 160-byte frames of ``encoding`` (PCMU or PCMA), the last padded with
        silence; raises ValueError for anything else (the worker does not encode other codecs)."""
        name = encoding.upper()
        cached = self._encoded.get(name)
        if cached is not None:
            return cached
        if name not in SILENCE:
            raise ValueError(f"a prompt plays in PCMU or PCMA, not {encoding}")
        encode = linear_to_ulaw if name == "PCMU" else linear_to_alaw
        codes = bytes(encode(int(sample)) for sample in self.samples)
        padding = -len(codes) % FRAME_SAMPLES
        codes += SILENCE[name] * padding
        frames = tuple(codes[at : at + FRAME_SAMPLES] for at in range(0, len(codes), FRAME_SAMPLES))
        self._encoded[name] = frames
        return frames


def chime() -> Prompt:
    """The built-in prompt (see the module's docstring): about 1.45 s."""
    length = round((CHIME_NOTES[-1][1] + CHIME_RING_S) * SAMPLE_RATE)
    out = np.zeros(length, dtype=np.float64)
    attack = round(0.005 * SAMPLE_RATE)
    for frequency, start_s in CHIME_NOTES:
        start = round(start_s * SAMPLE_RATE)
        count = min(round(CHIME_RING_S * SAMPLE_RATE), length - start)
        t = np.arange(count) / SAMPLE_RATE
        # A bell-like partial mix; every harmonic of C6 (3139 Hz at most) stays in the telephone band.
        tone = (
            np.sin(2 * math.pi * frequency * t)
            + 0.3 * np.sin(2 * math.pi * 2 * frequency * t)
            + 0.1 * np.sin(2 * math.pi * 3 * frequency * t)
        )
        envelope = np.exp(-t / 0.25)
        envelope[:attack] *= np.linspace(0.0, 1.0, attack)
        out[start : start + count] += tone * envelope
    out *= CHIME_PEAK / float(np.max(np.abs(out)))
    return Prompt("chime", out.astype(np.int16))


__all__ = ["CHIME_NOTES", "FRAME_SAMPLES", "SAMPLE_RATE", "SILENCE", "Prompt", "chime"]
