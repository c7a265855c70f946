"""The demo line's prompt: the audio an ``announcement`` session plays, made at run time.

No recording lives in git: a binary asset would be a blob to review, license and keep in step with
the words. The prompt is a chime computed here, followed by words spoken by espeak-ng when it is
installed (``apt install espeak-ng``; the words and the voice are settings).

- The chime: four notes rising (C5, E5, G5, C6, a major arpeggio a newcomer takes for "connected"),
  each a sine with a little of its second and third harmonic, a 5 ms attack and an exponential
  decay, so the notes ring into each other like a bell. It sits in the telephone band (300-3400 Hz,
  ITU-T G.712) and peaks near -12 dBFS, loud enough to hear without clipping G.711.
- The words: espeak-ng's WAV (22.05 kHz) brought to 8 kHz by cutting its spectrum at 4 kHz (an ideal
  low-pass, fine for a few seconds made once) and to a peak near -9 dBFS. The result is cached under
  the data directory (a file per words, voice and rate), so a worker runs espeak-ng once, at
  start-up, in a thread; without espeak-ng (or with empty words) the prompt is the chime alone.

A :class:`Prompt` holds 8 kHz 16-bit samples and hands out 20 ms frames in either G.711 law
(RFC 3551 section 4.5.14), encoded once per law.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
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
ESPEAK: Final = "espeak-ng"
#: espeak-ng's speed (words per minute): a little slower than its 175, as announcements are.
SPEECH_WPM: Final = 150
SPEECH_PEAK: Final = 11500
#: Between the chime's last note and the first word.
WORDS_AFTER_S: Final = 0.2

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


class SpeechError(RuntimeError):
    """espeak-ng failed (an unknown voice, a crash) or gave audio we cannot read."""


def spoken(words: str, voice: str, cache_dir: Path | None) -> np.ndarray | None:
    """``words`` said by espeak-ng in ``voice`` as 8 kHz 16-bit samples: from the cache when it has
    them, else made (and cached when ``cache_dir`` is writable); None when espeak-ng is not installed.
    Blocking (a subprocess and files): run it in a thread. Raises :class:`SpeechError`."""
    key = hashlib.sha256(f"{voice}\n{SPEECH_WPM}\n{words}".encode()).hexdigest()[:20]
    cached = cache_dir / f"words-{key}.s16le" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return np.frombuffer(cached.read_bytes(), dtype="<i2").astype(np.int16)
    executable = shutil.which(ESPEAK)
    if executable is None:
        return None
    with tempfile.TemporaryDirectory(prefix="echodesk-words-") as directory:
        out = Path(directory) / "words.wav"
        try:
            # The words go in on stdin, so nothing in them can be taken for an option.
            subprocess.run(
                [executable, "-v", voice, "-s", str(SPEECH_WPM), "-w", str(out)],
                input=words.encode(),
                capture_output=True,
                check=True,
                timeout=30,
            )
            with wave.open(str(out), "rb") as wav:
                if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                    raise SpeechError(
                        f"{ESPEAK} wrote {wav.getnchannels()} channels of {wav.getsampwidth()} bytes"
                    )
                rate = wav.getframerate()
                source = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace").strip() or f"exit status {exc.returncode}"
            raise SpeechError(f"{ESPEAK} -v {voice}: {detail}") from None
        except (OSError, subprocess.TimeoutExpired, wave.Error, EOFError) as exc:
            raise SpeechError(f"{ESPEAK}: {exc}") from None
    if not np.any(source):
        raise SpeechError(f"{ESPEAK} -v {voice} said nothing")
    samples = _normalized(_resampled(source.astype(np.float64), rate), SPEECH_PEAK)
    if cached is not None:
        with contextlib.suppress(OSError):  # a read-only data directory: made again next start
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(samples.astype("<i2").tobytes())
            partial.replace(cached)
    return samples


def demo_prompt(words: str, voice: str, cache_dir: Path | None) -> Prompt:
    """The demo line's prompt: the chime, then ``words`` when espeak-ng can say them (see
    :func:`spoken`; its :class:`SpeechError` propagates, the caller keeps the chime)."""
    bell = chime()
    speech = spoken(words, voice, cache_dir) if words.strip() else None
    if speech is None:
        return bell
    gap = np.zeros(round(WORDS_AFTER_S * SAMPLE_RATE), dtype=np.int16)
    return Prompt("chime and words", np.concatenate([bell.samples, gap, speech]))


def _resampled(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` at ``rate`` brought to 8 kHz by truncating (or padding) their spectrum."""
    if rate == SAMPLE_RATE:
        return samples
    count = max(1, round(len(samples) * SAMPLE_RATE / rate))
    spectrum = np.fft.rfft(samples)
    kept = np.zeros(count // 2 + 1, dtype=spectrum.dtype)
    bins = min(len(kept), len(spectrum))
    kept[:bins] = spectrum[:bins]
    resampled: np.ndarray = np.fft.irfft(kept, count) * (count / len(samples))
    return resampled


def _normalized(samples: np.ndarray, peak: int) -> np.ndarray:
    loudest = float(np.max(np.abs(samples)))
    scaled = samples * (peak / loudest) if loudest else samples
    out: np.ndarray = np.clip(np.round(scaled), -32768, 32767).astype(np.int16)
    return out


__all__ = [
    "CHIME_NOTES",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "SILENCE",
    "Prompt",
    "SpeechError",
    "chime",
    "demo_prompt",
    "spoken",
]
