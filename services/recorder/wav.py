"""A stereo 16-bit PCM WAV file written in place: any channel, any position, in any order.

Each leg writes its own channel into the interleaved frames with a read-modify-write of the span it
covers (``pread``/``pwrite``; the page cache makes that a memory copy), so chunks that arrive late or
twice land where they belong and writing the same chunk again changes nothing. Writing beyond the end
leaves a hole the file system fills with zeros: silence, of exactly the missing length.

:meth:`sync` rewrites the header's sizes for the frames so far and ``fsync``s, so after a crash the
file up to the last sync is a valid WAV (RIFF, ``fmt `` PCM, ``data``: the canonical 44-byte header).
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path
from typing import Final

import numpy as np

from services.recorder.g711 import Samples

HEADER_BYTES: Final = 44
CHANNELS: Final = 2
FRAME_BYTES: Final = 2 * CHANNELS
#: Spans of one chunk further apart than this are written separately rather than as one region.
_MAX_SPAN_FRAMES: Final = 8000 * 4


def wav_header(frames: int, rate: int, channels: int = CHANNELS) -> bytes:
    data = frames * 2 * channels
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        rate,
        rate * 2 * channels,
        2 * channels,
        16,
        b"data",
        data,
    )


class StereoWav:
    def __init__(self, path: Path, rate: int, *, frames: int | None = None) -> None:
        """Open (creating) ``path``; ``frames`` cuts an existing file back to a checkpoint's length."""
        self.path = path
        self.rate = rate
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        if frames is None:
            os.ftruncate(self._fd, 0)
            frames = 0
        os.ftruncate(self._fd, HEADER_BYTES + frames * FRAME_BYTES)
        self.frames = frames
        os.pwrite(self._fd, wav_header(frames, rate), 0)

    def write(self, channel: int, spans: list[tuple[int, Samples]]) -> int:
        """Write each (position, samples) into ``channel``; returns the samples dropped before 0."""
        dropped = 0
        clipped: list[tuple[int, Samples]] = []
        for position, samples in spans:
            if position < 0:
                dropped += min(-position, len(samples))
                samples = samples[-position:]
                position = 0
            if len(samples):
                clipped.append((position, samples))
        if not clipped:
            return dropped
        start = min(position for position, _ in clipped)
        end = max(position + len(samples) for position, samples in clipped)
        if end - start <= _MAX_SPAN_FRAMES:
            self._write_region(channel, start, end, clipped)
        else:
            for position, samples in clipped:
                self._write_region(channel, position, position + len(samples), [(position, samples)])
        return dropped

    def _write_region(self, channel: int, start: int, end: int, spans: list[tuple[int, Samples]]) -> None:
        offset = HEADER_BYTES + start * FRAME_BYTES
        # Read into a zeroed buffer that numpy views in place: what lies beyond the end stays silence.
        region = bytearray((end - start) * FRAME_BYTES)
        os.preadv(self._fd, [region], offset)
        frames = np.frombuffer(region, dtype=np.int16).reshape(-1, CHANNELS)
        for position, samples in spans:
            frames[position - start : position - start + len(samples), channel] = samples
        written = os.pwrite(self._fd, region, offset)
        if written != len(region):
            # A full disk takes what fits and says so only on the next write: never count a chunk
            # whose audio is not all on disk as applied.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.frames = max(self.frames, end)

    def extend_to(self, frames: int) -> None:
        """Silence up to ``frames`` (the call went on after the last packet)."""
        if frames > self.frames:
            os.ftruncate(self._fd, HEADER_BYTES + frames * FRAME_BYTES)
            self.frames = frames

    def sync(self, frames: int | None = None) -> None:
        """Header for ``frames`` (all written so far by default), then everything to disk."""
        os.pwrite(self._fd, wav_header(self.frames if frames is None else frames, self.rate), 0)
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate


__all__ = ["CHANNELS", "HEADER_BYTES", "StereoWav", "wav_header"]
