"""The contract between media workers and recorders: audio chunks and recording leases.

**Chunks** travel on ``recordings.audio.<call_id>`` (JetStream stream ``RECORDING_AUDIO``), one
sequence per call across both legs; the ``Nats-Msg-Id`` is ``<call_id>:<sequence>`` so a worker that
publishes a chunk again is de-duplicated by the server. They are binary, not JSON: a call sends about
12 of them a second and a worker hundreds of calls, and G.711 payloads would double in base64.

Every chunk starts with the same header (network byte order)::

    magic "EDRC" | version u8 | kind u8 | leg u8 | reserved u8 | sequence u32 | started_at f64
    | tenant length u8 | tenant (ASCII, a subject token)

``started_at`` is the worker's wall clock (Unix seconds) at the call's first forked packet, and every
``arrival_us`` counts microseconds on the worker's monotonic clock from that packet: one clock for
both legs, which is what the recorder lines them up by. The body depends on ``kind``:

- ``AUDIO``: codec length u8, codec (``PCMU/8000``), SSRC u32, frame count u16, then per RTP packet
  ``sequence u16 | timestamp u32 | arrival_us u64 | length u16 | payload`` (the G.711 bytes as relayed,
  RFC 3550 sequence and timestamp as received).
- ``PAUSE`` / ``RESUME``: ``arrival_us u64``: from there on the recording is silent (a customer reads a
  card number), until the resume.
- ``END``: ``arrival_us u64 | chunks_dropped u32 | packets u32``: the call is over; ``sequence`` is
  the number of chunks sent before it, ``chunks_dropped`` how many of those the worker had to drop
  (bus unavailable for long), ``packets`` how many RTP packets it forked in all.

**Leases** live in the KV bucket ``recordings``, keyed by call id: which recorder owns a call's
recording until when. The worker creates one with no owner when a recorded session starts; recorders
claim unowned or expired leases by compare-and-set on the entry's revision, so one owns it at a time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

from pydantic import Field

from shared.events import TOKEN_PATTERN, ContractModel, LegKind, Token

MAGIC: Final = b"EDRC"
VERSION: Final = 1
#: A chunk larger than this is refused: 16 frames of 20 ms G.711 are ~3 KB.
MAX_CHUNK_BYTES: Final = 64 * 1024
#: A single RTP payload larger than this is not audio we relay (an Ethernet MTU).
MAX_PAYLOAD: Final = 1500

HEADER: Final = struct.Struct("!4sBBBxIdB")
AUDIO_HEAD: Final = struct.Struct("!IH")
FRAME: Final = struct.Struct("!HIQH")
MARK: Final = struct.Struct("!Q")
END: Final = struct.Struct("!QII")

_LEG_CODES: Final = {LegKind.AGENT: 0, LegKind.CUSTOMER: 1}
#: Codec names already checked, by their bytes.
_CODECS: dict[bytes, str] = {}
_LEGS: Final = {code: leg for leg, code in _LEG_CODES.items()}
_TOKEN_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
assert TOKEN_PATTERN == r"^[A-Za-z0-9_-]{1,64}$", "keep _TOKEN_CHARS in step with the token pattern"


class ChunkKind(IntEnum):
    AUDIO = 1
    END = 2
    PAUSE = 3
    RESUME = 4


class MalformedChunk(ValueError):
    """The bytes are not a chunk this version understands; the message says what is wrong."""


class Frame(NamedTuple):
    """One RTP packet's audio as the worker received it (a tuple: a chunk holds eight, built fast)."""

    sequence: int
    timestamp: int
    arrival_us: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class AudioChunk:
    tenant_id: str
    sequence: int
    started_at: float
    leg: LegKind
    codec: str
    ssrc: int
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class PauseMark:
    """Recording paused (``paused``) or resumed at ``arrival_us``; both legs alike."""

    tenant_id: str
    sequence: int
    started_at: float
    arrival_us: int
    paused: bool


@dataclass(frozen=True, slots=True)
class EndOfCall:
    tenant_id: str
    sequence: int
    started_at: float
    arrival_us: int
    chunks_dropped: int
    packets: int


Chunk = AudioChunk | PauseMark | EndOfCall


def message_id(call_id: str, sequence: int) -> str:
    """The ``Nats-Msg-Id`` of a chunk: the server drops a second publish of it."""
    return f"{call_id}:{sequence}"


def header(kind: ChunkKind, leg: LegKind, sequence: int, started_at: float, tenant_id: bytes) -> bytes:
    """The common header; ``tenant_id`` already ASCII (the worker encodes it once per call)."""
    return (
        HEADER.pack(MAGIC, VERSION, kind, _LEG_CODES[leg], sequence, started_at, len(tenant_id)) + tenant_id
    )


def audio_head(codec: bytes, ssrc: int, count: int) -> bytes:
    return bytes((len(codec),)) + codec + AUDIO_HEAD.pack(ssrc, count)


def encode(chunk: Chunk, leg: LegKind = LegKind.AGENT) -> bytes:
    """The bytes of ``chunk`` (the worker builds audio chunks incrementally with the same layout)."""
    tenant = chunk.tenant_id.encode("ascii")
    if isinstance(chunk, AudioChunk):
        head = header(ChunkKind.AUDIO, chunk.leg, chunk.sequence, chunk.started_at, tenant)
        body = b"".join(
            FRAME.pack(f.sequence, f.timestamp, f.arrival_us, len(f.payload)) + f.payload
            for f in chunk.frames
        )
        return head + audio_head(chunk.codec.encode("ascii"), chunk.ssrc, len(chunk.frames)) + body
    if isinstance(chunk, PauseMark):
        kind = ChunkKind.PAUSE if chunk.paused else ChunkKind.RESUME
        return header(kind, leg, chunk.sequence, chunk.started_at, tenant) + MARK.pack(chunk.arrival_us)
    head = header(ChunkKind.END, leg, chunk.sequence, chunk.started_at, tenant)
    return head + END.pack(chunk.arrival_us, chunk.chunks_dropped, chunk.packets)


def decode(data: bytes) -> Chunk:
    """Parse a chunk strictly: every length checked, no trailing bytes; raises :class:`MalformedChunk`."""
    if len(data) > MAX_CHUNK_BYTES:
        raise MalformedChunk(f"{len(data)} bytes, more than {MAX_CHUNK_BYTES}")
    if len(data) < HEADER.size:
        raise MalformedChunk(f"{len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, kind_code, leg_code, sequence, started_at, tenant_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedChunk(f"magic {magic!r} is not {MAGIC!r}")
    if version != VERSION:
        raise MalformedChunk(f"version {version} is not {VERSION}")
    try:
        kind = ChunkKind(kind_code)
    except ValueError:
        raise MalformedChunk(f"unknown kind {kind_code}") from None
    leg = _LEGS.get(leg_code)
    if leg is None:
        raise MalformedChunk(f"unknown leg {leg_code}")
    if not started_at == started_at or started_at < 0:  # NaN or negative
        raise MalformedChunk(f"started_at {started_at} is not a time")
    at = HEADER.size
    tenant_raw = data[at : at + tenant_len]
    if not 1 <= tenant_len == len(tenant_raw) <= 64 or not _TOKEN_CHARS.issuperset(tenant_raw):
        raise MalformedChunk("tenant is not a token")
    tenant = tenant_raw.decode("ascii")
    at += tenant_len
    if kind is ChunkKind.AUDIO:
        return _decode_audio(data, at, tenant, sequence, started_at, leg)
    if kind is ChunkKind.END:
        _exact(data, at, END.size, "end marker")
        arrival_us, dropped, packets = END.unpack_from(data, at)
        return EndOfCall(tenant, sequence, started_at, arrival_us, dropped, packets)
    _exact(data, at, MARK.size, "pause mark")
    (arrival_us,) = MARK.unpack_from(data, at)
    return PauseMark(tenant, sequence, started_at, arrival_us, kind is ChunkKind.PAUSE)


def peek_sequence(data: bytes) -> int | None:
    """The chunk sequence from the header alone (None when it is not a chunk's header): lets a reader
    skip what it has without parsing the frames."""
    if len(data) < HEADER.size or data[:4] != MAGIC:
        return None
    sequence: int = HEADER.unpack_from(data)[4]
    return sequence


def _decode_audio(
    data: bytes, at: int, tenant: str, sequence: int, started_at: float, leg: LegKind
) -> AudioChunk:
    if at >= len(data):
        raise MalformedChunk("audio chunk ends before its codec")
    codec_len = data[at]
    codec_raw = data[at + 1 : at + 1 + codec_len]
    codec = _CODECS.get(codec_raw)
    if codec is None:
        if codec_len == 0 or len(codec_raw) != codec_len or not all(0x21 <= b < 0x7F for b in codec_raw):
            raise MalformedChunk("codec is not a printable name")
        codec = codec_raw.decode("ascii")
        if len(_CODECS) < 64:  # a call names one or two; a stream of made-up names is not kept
            _CODECS[codec_raw] = codec
    at += 1 + codec_len
    if at + AUDIO_HEAD.size > len(data):
        raise MalformedChunk("audio chunk ends before its frame count")
    ssrc, count = AUDIO_HEAD.unpack_from(data, at)
    at += AUDIO_HEAD.size
    frames = []
    end = len(data)
    unpack = FRAME.unpack_from
    size = FRAME.size
    for index in range(count):
        if at + size > end:
            raise MalformedChunk(f"frame {index} of {count} is cut short")
        seq, timestamp, arrival_us, length = unpack(data, at)
        at += size
        if length > MAX_PAYLOAD or at + length > end:
            raise MalformedChunk(f"frame {index} claims {length} payload bytes")
        frames.append(Frame(seq, timestamp, arrival_us, data[at : at + length]))
        at += length
    if at != end:
        raise MalformedChunk(f"{end - at} bytes after the last frame")
    return AudioChunk(tenant, sequence, started_at, leg, codec, ssrc, tuple(frames))


def _exact(data: bytes, at: int, size: int, what: str) -> None:
    if len(data) - at != size:
        raise MalformedChunk(f"{what} body is {len(data) - at} bytes, not {size}")


class RecordingLease(ContractModel):
    """Value of a call's entry in KV ``recordings``: who records it, until when (Unix seconds)."""

    recording_id: Token | None = Field(default=None, description="Chosen by the first recorder to claim")
    owner: Token | None = Field(default=None, description="Instance id of the recorder; None: unclaimed")
    expires_at: float = Field(
        default=0.0, ge=0, description="The owner renews before this; after it, anyone may claim"
    )
    claims: int = Field(default=0, ge=0, description="How many times a recorder claimed it (1 + takeovers)")
    announced: bool = Field(
        default=False, description="recording.started is out (a successor does not repeat it)"
    )
    done_at: float | None = Field(
        default=None, description="Set when the recording is stored or failed; the entry is removed later"
    )


class RecorderJob(ContractModel):
    """Value of a scheduled job's entry in KV ``recorder_jobs`` (``retention``): which recorder runs
    it until when, and when it last ran (Unix seconds), so one recorder at a time runs it."""

    owner: Token | None = Field(default=None, description="Instance id of the recorder running it now")
    expires_at: float = Field(default=0.0, ge=0, description="After this a runner that died is replaced")
    last_run_at: float | None = Field(default=None, description="When the last run finished")
    runs: int = Field(default=0, ge=0, description="Runs finished so far")


class DeleteRecording(ContractModel):
    """Ask the recorders (``recordings.command.delete``, queue group ``recorder``) to delete a stored
    recording with its metadata and compressed copy: a customer's erasure request, a legal order."""

    tenant_id: Token
    call_id: Token
    recording_id: Token
    location: str = Field(description="The location recording.completed gave", max_length=2048)
    reason: str = Field(min_length=1, max_length=500, description="Why; repeated in recording.deleted")


class RecordingDeletion(ContractModel):
    """The reply: every object that was removed (an object already gone is not an error)."""

    deleted: list[str]


__all__ = [
    "AudioChunk",
    "Chunk",
    "ChunkKind",
    "DeleteRecording",
    "EndOfCall",
    "Frame",
    "MalformedChunk",
    "PauseMark",
    "RecorderJob",
    "RecordingDeletion",
    "RecordingLease",
    "decode",
    "encode",
    "message_id",
    "peek_sequence",
]
