"""The compressed copy of a finished recording: Opus in Ogg (RFC 7845), made after the call.

PyAV (FFmpeg's libopus) encodes the stereo WAV at its own 8 kHz (Opus takes 8 kHz input natively and
codes it as narrowband) at 24 kbit/s: about 1/20 of the WAV. Blocking and CPU-bound: run it in a thread.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Final

import av
import numpy as np

BITRATE: Final = 24_000
_BLOCK_FRAMES: Final = 8000


def encode_opus(source: Path, target: Path, *, bitrate: int = BITRATE) -> None:
    with wave.open(str(source), "rb") as reader:
        rate = reader.getframerate()
        channels = reader.getnchannels()
        if reader.getsampwidth() != 2 or channels not in (1, 2):
            raise ValueError(f"{source.name}: not 16-bit mono or stereo PCM")
        layout = "stereo" if channels == 2 else "mono"
        with av.open(str(target), "w", format="ogg") as container:
            stream = container.add_stream("libopus", rate=rate, layout=layout)
            stream.bit_rate = bitrate
            pts = 0
            while True:
                data = reader.readframes(_BLOCK_FRAMES)
                if not data:
                    break
                samples = np.frombuffer(data, dtype=np.int16).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
                frame.sample_rate = rate
                frame.pts = pts
                pts += samples.shape[1] // channels
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)


__all__ = ["encode_opus"]
