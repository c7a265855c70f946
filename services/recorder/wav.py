"""A stereo 16-bit PCM WAV file written in place: any channel, any position, in any order.

Audio past what was last flushed (nearly every chunk: a call's audio comes in order) is written into
a buffer in memory, both channels interleaved as in the file, and :meth:`flush` writes the buffer in
one ``pwrite`` (a checkpoint does, every few seconds): a chunk costs a slice assignment instead of a
read-modify-write of the file per leg (``bench/recorder_throughput.py``). Audio for what was already
flushed (a chunk arriving late) is written in place with a read-modify-write of the span it covers
(``pread``/``pwrite``). Either way chunks that arrive late or twice land where they belong and writing
the same chunk again changes nothing. Writing beyond the end leaves a hole the file system fills
with zeros: silence, of exactly the missing length.

:meth:`sync` rewrites the header's sizes for the frames so far and ``fsync``s what was flushed, so
after a crash the file up to the last flush and sync is a valid WAV (RIFF, ``fmt `` PCM, ``data``:
the canonical 44-byte header).
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
#: Frames buffered before the buffer grows (a checkpoint interval of 5 s is 40000 at 8 kHz).
_BUFFER_FRAMES: Final = 8000 * 8
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
        #: The file holds nothing written at or past ``_base`` (frames): what goes there is
        #: buffered, ``_used`` frames of ``_pending`` from ``_base`` on, until :meth:`flush`.
        self._base = frames
        self._pending = np.zeros((_BUFFER_FRAMES, CHANNELS), dtype=np.int16)
        self._used = 0

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
        base = self._base
        direct: list[tuple[int, Samples]] = []
        for position, samples in clipped:
            if position >= base:
                self._buffer(channel, position - base, samples)
            elif position + len(samples) <= base:
                direct.append((position, samples))
            else:
                cut = base - position
                direct.append((position, samples[:cut]))
                self._buffer(channel, 0, samples[cut:])
        self.frames = max(self.frames, base + self._used)
        if direct:
            self._write_direct(channel, direct)
        return dropped

    def _buffer(self, channel: int, at: int, samples: Samples) -> None:
        end = at + len(samples)
        if end > len(self._pending):
            grown = np.zeros((max(end, 2 * len(self._pending)), CHANNELS), dtype=np.int16)
            grown[: self._used] = self._pending[: self._used]
            self._pending = grown
        self._pending[at:end, channel] = samples
        if end > self._used:
            self._used = end

    def flush(self) -> None:
        """Write the buffered audio to the file (not synced); on a full disk it stays buffered and
        :class:`OSError` says why, and the next flush writes it again."""
        used = self._used
        if not used:
            return
        block = self._pending[:used]
        written = os.pwrite(self._fd, block.data, HEADER_BYTES + self._base * FRAME_BYTES)
        if written != block.nbytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._base += used
        self._used = 0
        # Fresh zeroed memory (calloc: pages cost nothing until written) rather than zeroing.
        self._pending = np.zeros((_BUFFER_FRAMES, CHANNELS), dtype=np.int16)

    def _write_direct(self, channel: int, clipped: list[tuple[int, Samples]]) -> None:
        start = min(position for position, _ in clipped)
        end = max(position + len(samples) for position, samples in clipped)
        if end - start <= _MAX_SPAN_FRAMES:
            self._write_region(channel, start, end, clipped)
        else:
            for position, samples in clipped:
                self._write_region(channel, position, position + len(samples), [(position, samples)])

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
        """Silence up to ``frames`` (the call went on after the last packet); after a :meth:`flush`."""
        if frames > self.frames:
            os.ftruncate(self._fd, HEADER_BYTES + frames * FRAME_BYTES)
            self.frames = frames

    def sync(self, frames: int | None = None) -> None:
        """Header for ``frames`` (all written so far by default), then everything flushed to disk.
        Safe in another thread while chunks are buffered: it does not touch the buffer."""
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
