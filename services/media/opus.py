"""libopus (RFC 6716) through ctypes, for the calls that need Opus <-> G.711 transcoding.

Why ctypes and not aiortc's codec classes or PyAV's ``CodecContext``: those work on frames (an
``AudioFrame`` per packet, a resampler to 48 kHz stereo, packets as objects), which is what makes
stock aiortc cost tens of ms of CPU per second per call. Here one call into libopus per packet
does the whole job: the decoder is created at 8 kHz mono (libopus decodes to any of 8/12/16/24/48
kHz itself, RFC 6716 section 4.3), the encoder is fed 8 kHz mono (it signals narrowband and the
RTP clock stays 48 kHz whatever the input rate, RFC 7587 section 4.1).

The library is the libopus that PyAV's wheel bundles (aiortc depends on PyAV, so every media
install has it); a system libopus is used when that copy is not there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
from typing import Final

#: opus_defines.h: OPUS_APPLICATION_VOIP, OPUS_SET_COMPLEXITY_REQUEST, OPUS_SET_INBAND_FEC_REQUEST,
#: OPUS_SET_PACKET_LOSS_PERC_REQUEST, OPUS_SET_BITRATE_REQUEST.
_APPLICATION_VOIP: Final = 2048
_SET_BITRATE: Final = 4002
_SET_COMPLEXITY: Final = 4010
_SET_INBAND_FEC: Final = 4012
_SET_PACKET_LOSS_PERC: Final = 4014
#: The largest Opus frame is 120 ms (RFC 6716 section 2.1.4): the decoder's output room per packet.
MAX_FRAME_MS: Final = 120
#: RFC 6716 section 3.4 R1: an Opus packet has at least one byte; 1275 bytes is the largest frame.
MAX_PACKET: Final = 1500


class OpusError(RuntimeError):
    """libopus refused: a corrupt packet (decode) or a bad argument (encode); its message is libopus's."""


def _library_paths() -> list[str]:
    paths: list[str] = []
    spec = importlib.util.find_spec("av")
    if spec is not None and spec.origin is not None:
        # auditwheel puts the bundled libraries in ``av.libs`` beside the package, names hashed.
        site = os.path.dirname(os.path.dirname(spec.origin))
        paths += sorted(glob.glob(os.path.join(site, "av.libs", "libopus*.so*")))
        paths += sorted(glob.glob(os.path.join(site, "av", ".dylibs", "libopus*.dylib")))
    system = ctypes.util.find_library("opus")
    if system is not None:
        paths.append(system)
    return paths


def _load() -> ctypes.CDLL:
    for path in _library_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(library)
        return library
    raise OpusError("no libopus: install the media extra (PyAV bundles it) or the system libopus")


def _declare(library: ctypes.CDLL) -> None:
    pointer, c_int, int_p = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)
    library.opus_encoder_create.argtypes = [ctypes.c_int32, c_int, c_int, int_p]
    library.opus_encoder_create.restype = pointer
    library.opus_encoder_destroy.argtypes = [pointer]
    library.opus_encoder_destroy.restype = None
    library.opus_encode.argtypes = [pointer, ctypes.c_char_p, c_int, ctypes.c_char_p, ctypes.c_int32]
    library.opus_encode.restype = ctypes.c_int32
    # opus_encoder_ctl is variadic: the request and one int argument are passed as C ints.
    library.opus_encoder_ctl.restype = c_int
    library.opus_decoder_create.argtypes = [ctypes.c_int32, c_int, int_p]
    library.opus_decoder_create.restype = pointer
    library.opus_decoder_destroy.argtypes = [pointer]
    library.opus_decoder_destroy.restype = None
    library.opus_decode.argtypes = [pointer, ctypes.c_char_p, ctypes.c_int32, ctypes.c_char_p, c_int, c_int]
    library.opus_decode.restype = c_int
    library.opus_strerror.argtypes = [c_int]
    library.opus_strerror.restype = ctypes.c_char_p


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libopus, loaded on first use (a worker that never transcodes never loads it)."""
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


def _error(code: int) -> str:
    message = library().opus_strerror(code)
    return message.decode() if isinstance(message, bytes) else str(code)


class OpusDecoder:
    """One stream's decoder: Opus packets in, 16-bit native-endian mono PCM at ``rate`` out."""

    __slots__ = ("_buffer", "_decode", "_max_samples", "_state", "rate")

    def __init__(self, rate: int = 8000) -> None:
        lib = library()
        error = ctypes.c_int(0)
        state = lib.opus_decoder_create(rate, 1, ctypes.byref(error))
        if error.value != 0 or not state:
            raise OpusError(f"opus_decoder_create: {_error(error.value)}")
        self._state = ctypes.c_void_p(state)
        self._decode = lib.opus_decode
        self.rate = rate
        self._max_samples = rate * MAX_FRAME_MS // 1000
        self._buffer = ctypes.create_string_buffer(self._max_samples * 2)

    def decode(self, packet: bytes) -> bytes:
        """The PCM of one packet (RFC 6716 section 4); raises :class:`OpusError` for a corrupt one."""
        samples = self._decode(self._state, packet, len(packet), self._buffer, self._max_samples, 0)
        if samples < 0:
            raise OpusError(f"opus_decode: {_error(samples)}")
        return self._buffer.raw[: samples * 2]

    def conceal(self, samples: int, next_packet: bytes | None = None) -> bytes:
        """``samples`` of audio for a lost packet: from ``next_packet``'s in-band FEC when it carries
        any (the LBRR data of the frame before it, RFC 6716 section 4.2.5), else the decoder's packet
        loss concealment (section 4.4). ``samples`` must be a multiple of 2.5 ms."""
        samples = min(samples, self._max_samples)
        if next_packet is not None:
            got = self._decode(self._state, next_packet, len(next_packet), self._buffer, samples, 1)
        else:
            got = self._decode(self._state, None, 0, self._buffer, samples, 0)
        if got < 0:
            raise OpusError(f"opus_decode (concealment): {_error(got)}")
        return self._buffer.raw[: got * 2]

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None and _lib is not None:
            _lib.opus_decoder_destroy(state)


class OpusEncoder:
    """One stream's encoder, fed 16-bit native-endian mono PCM at ``rate`` in whole frames."""

    __slots__ = ("_buffer", "_encode", "_state", "rate")

    def __init__(
        self, rate: int = 8000, *, complexity: int = 5, bitrate: int | None = None, fec: bool = True
    ) -> None:
        lib = library()
        error = ctypes.c_int(0)
        state = lib.opus_encoder_create(rate, 1, _APPLICATION_VOIP, ctypes.byref(error))
        if error.value != 0 or not state:
            raise OpusError(f"opus_encoder_create: {_error(error.value)}")
        self._state = ctypes.c_void_p(state)
        self.rate = rate
        self._ctl(_SET_COMPLEXITY, complexity)
        if bitrate is not None:
            self._ctl(_SET_BITRATE, bitrate)
        if fec:
            # In-band FEC (RFC 7587 section 3.3's useinbandfec): a browser rebuilds a lost frame from
            # the next packet; libopus adds it only when told to expect loss.
            self._ctl(_SET_INBAND_FEC, 1)
            self._ctl(_SET_PACKET_LOSS_PERC, 5)
        self._encode = lib.opus_encode
        self._buffer = ctypes.create_string_buffer(MAX_PACKET)

    def _ctl(self, request: int, value: int) -> None:
        code = library().opus_encoder_ctl(self._state, ctypes.c_int(request), ctypes.c_int(value))
        if code != 0:
            raise OpusError(f"opus_encoder_ctl({request}, {value}): {_error(code)}")

    def encode(self, pcm: bytes) -> bytes:
        """One Opus packet from one frame of PCM (2.5, 5, 10, 20, 40 or 60 ms at ``rate``)."""
        size = self._encode(self._state, pcm, len(pcm) // 2, self._buffer, MAX_PACKET)
        if size < 0:
            raise OpusError(f"opus_encode: {_error(size)}")
        return self._buffer.raw[:size]

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None and _lib is not None:
            _lib.opus_encoder_destroy(state)


__all__ = ["OpusDecoder", "OpusEncoder", "OpusError", "library"]
