"""One direction of a bridge whose legs share no codec: Opus (RFC 7587) <-> G.711 on our packet path.

A browser that offers only Opus gets Opus; a carrier speaks G.711. :class:`TranscodingRelay` is a
:class:`~services.media.relay.Relay` (same statistics, DTMF detection and recording tap, same
synchronous ``receive``: a packet's work and nothing more on the event loop) whose ``connect`` takes
a target in the other family:

- Opus -> G.711: libopus decodes at 8 kHz mono (no resampling: RFC 6716 section 4.3), the samples
  are encoded to mu-law or A-law by one table lookup and leave as 20 ms packets (RFC 3551 section
  4.5.14's default). After a gap in sequence numbers the packets that came wait up to a packet's
  time for the missing one (reordering: the jitter buffer of this path, which delays nothing
  else); a packet still missing then is rebuilt from the next packet's in-band FEC when it carries
  some and by the decoder's concealment otherwise (RFC 6716 sections 4.2.5 and 4.4), so the
  carrier hears a continuous stream. A packet behind the last one played is dropped: its time has
  passed.
- G.711 -> Opus: a table lookup decodes, libopus (complexity 5, VoIP mode, in-band FEC when the
  browser asks for it) encodes
  20 ms frames fed at 8 kHz mono; RTP timestamps run at 48 kHz whatever the input rate (RFC 7587
  section 4.1). Samples of packets longer or shorter than 20 ms wait for the next frame; a gap in
  the carrier's timestamps starts the frame afresh.

RFC 4733 events pass with their timestamps and durations moved to the target's event clock (a
browser's telephone-event runs at 48 kHz next to Opus, RFC 4733 section 2.1). Our sequence numbers
are counted here (one input packet can make several output packets), then
:meth:`OutboundStream.rewrite` shifts them into the target's stream as for any relayed source.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from services.media.dtmf import Digit
from services.media.g711 import decoding_table, encoding_table
from services.media.opus import OpusDecoder, OpusEncoder, OpusError
from services.media.relay import Relay, Target
from services.media.rtp import FIELDS, ReceptionStats, payload_bounds
from shared.sdp import Codec

_G711: Final = frozenset({"PCMU", "PCMA"})
#: G.711 samples per outgoing packet and per Opus frame we encode: 20 ms at 8 kHz.
FRAME: Final = 160
#: PCM bytes of one frame (16-bit samples).
_FRAME_BYTES: Final = 2 * FRAME
#: Lost Opus packets rebuilt per gap; a longer gap is an outage, not loss, and restarts the stream.
MAX_CONCEALED: Final = 5
#: libopus's complexity for our encoder: 5 of 10 is the usual VoIP trade of CPU against quality.
COMPLEXITY: Final = 5
_MASK: Final = 0xFFFFFFFF
#: How long packets after a gap in the browser's Opus wait for the missing one before it is
#: concealed: one packet's time. Only a gap delays anything (the jitter buffer of this path).
REORDER_WAIT: Final = 0.02


class Cancellable(Protocol):
    def cancel(self) -> None: ...


#: ``schedule(delay, callback)``: the event loop's ``call_later``, or a virtual clock's in tests.
Schedule = Callable[[float, Callable[[], None]], Cancellable]


def _call_later(delay: float, callback: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, callback)


def is_opus(codec: Codec) -> bool:
    return codec.name.lower() == "opus"


def transcodes(source: Codec, target: Codec) -> bool:
    """True when audio from ``source`` needs :class:`TranscodingRelay` to reach ``target``."""
    names = (source.name.upper(), target.name.upper())
    return (names[0] == "OPUS" and names[1] in _G711) or (names[0] in _G711 and names[1] == "OPUS")


def _wants_fec(codec: Codec) -> bool:
    parameters = (codec.parameters or "").replace(" ", "").lower()
    return "useinbandfec=1" in parameters.split(";")


class _Timeline:
    """Maps the source's RTP timestamps onto ours at another clock rate, from packet to packet
    (a 32-bit wrap on either side stays continuous)."""

    __slots__ = ("_in", "_out", "ratio_den", "ratio_num")

    def __init__(self, num: int, den: int) -> None:
        self.ratio_num = num
        self.ratio_den = den
        self._in: int | None = None
        self._out = 0

    def reset(self) -> None:
        self._in = None

    def map(self, timestamp: int) -> int:
        last = self._in
        if last is None:
            self._in = timestamp
            return self._out
        delta = (timestamp - last) & _MASK
        if delta >= 0x80000000:
            delta -= 0x100000000
        out = (self._out + delta * self.ratio_num // self.ratio_den) & _MASK
        self._in, self._out = timestamp, out
        return out


class TranscodingRelay(Relay):
    """Opus from a browser towards G.711, or G.711 towards a browser's Opus."""

    __slots__ = (
        "_buffer",
        "_buffer_timestamp",
        "_decoder",
        "_encoder",
        "_event_ratio",
        "_frame_samples",
        "_from_law",
        "_last_sequence",
        "_last_source",
        "_next_timestamp",
        "_out_sequence",
        "_schedule",
        "_timeline",
        "_to_law",
        "_wait_timer",
        "_waiting",
        "recorded_codec",
    )

    def __init__(
        self,
        audio: Codec,
        event: Codec | None,
        on_digit: Callable[[Digit], None],
        *,
        stats: ReceptionStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__(audio, event, on_digit, stats=stats, clock=clock)
        self._schedule: Schedule = schedule if schedule is not None else _call_later
        #: Packets after a gap, by sequence number, waiting for the missing one (at most a packet's time).
        self._waiting: dict[int, tuple[int, int, bytes, float]] = {}
        self._wait_timer: Cancellable | None = None
        self._decoder: OpusDecoder | None = None
        self._encoder: OpusEncoder | None = None
        self._to_law: npt.NDArray[np.uint8] | None = None
        self._from_law: npt.NDArray[np.int16] | None = None
        self._timeline = _Timeline(1, 1)
        self._event_ratio = (1, 1)
        self._out_sequence = 0
        self._last_sequence: int | None = None
        self._last_source: int | None = None
        self._frame_samples = FRAME
        self._buffer = bytearray()
        self._buffer_timestamp = 0
        self._next_timestamp: int | None = None
        #: What the recording fork is given for this leg: G.711 after decoding when the leg speaks
        #: Opus (the recorder stores G.711), the leg's own audio otherwise.
        self.recorded_codec = audio

    def connect(self, target: Target) -> None:
        """Send to ``target`` from now on; raises ValueError for a pair this relay cannot transcode."""
        source, audio = self.audio, target.audio
        if not transcodes(source, audio):
            raise ValueError(f"no transcoding from {source} to {audio}: Opus <-> PCMU/PCMA only")
        if is_opus(source):
            if self._decoder is None:
                self._decoder = OpusDecoder(8000)
            self._to_law = encoding_table(audio.name)
            self._timeline.ratio_num, self._timeline.ratio_den = 8000, source.clock_rate
            self.recorded_codec = audio
        else:
            if self._encoder is None:
                # In-band FEC costs the encoder about a tenth more: only for a browser that says it
                # decodes it (RFC 7587 section 6.1, useinbandfec=1; Chromium does).
                self._encoder = OpusEncoder(8000, complexity=COMPLEXITY, fec=_wants_fec(audio))
            self._from_law = decoding_table(source.name)
            self._timeline.ratio_num, self._timeline.ratio_den = audio.clock_rate, 8000
        event_in = self.event.clock_rate if self.event is not None else source.clock_rate
        event_out = target.event.clock_rate if target.event is not None else audio.clock_rate
        self._event_ratio = (event_out, event_in)
        self._out_audio = audio.payload_type
        self._out_event = target.event.payload_type if target.event is not None else None
        self._table = None
        self._target = target

    def receive(self, packet: bytes) -> None:
        bounds = payload_bounds(packet)
        if bounds is None:
            self.counters.malformed += 1
            return
        second = packet[1]
        payload_type = second & 0x7F
        sequence, timestamp, source = FIELDS.unpack_from(packet, 2)
        audio = payload_type == self._audio_pt
        now = self.clock()
        self.stats.update(sequence, timestamp, source, now, audio)
        target = self._target
        if audio:
            payload = packet[bounds[0] : bounds[1]]
            if source != self._last_source:
                self._restart(source)
            if self._decoder is not None:
                self._from_opus(target, second & 0x80, sequence, timestamp, source, payload, now)
            else:
                tap = self.tap
                if tap is not None:
                    tap.add(sequence, timestamp, source, payload, now)
                self._to_opus(target, second & 0x80, sequence, timestamp, source, payload)
        elif payload_type == self._event_pt:
            payload = packet[bounds[0] : bounds[1]]
            digit = self.dtmf.receive(payload, timestamp, source)
            if digit is not None:
                self._on_digit(digit)
            out_event = self._out_event
            if target is None or target.held or target.stream.paused:
                self.counters.not_relayed += 1
            elif out_event is None or len(payload) < 4:
                self.counters.events_dropped += 1
            else:
                # RFC 4733 section 2.3.5: the duration counts in the event clock; so does the timestamp.
                num, den = self._event_ratio
                duration = min(0xFFFF, int.from_bytes(payload[2:4], "big") * num // den)
                moved = payload[:2] + duration.to_bytes(2, "big") + payload[4:]
                # The event's timestamp is on the audio's timeline (the same clock, RFC 4733 section 2.1).
                event_timestamp = self._timeline.map(timestamp)
                self._send(target, (second & 0x80) | out_event, event_timestamp, source, moved)
                self.counters.events_relayed += 1
        else:
            self.counters.other_dropped += 1

    # -- the two directions

    def _from_opus(
        self,
        target: Target | None,
        marker: int,
        sequence: int,
        timestamp: int,
        source: int,
        payload: bytes,
        now: float,
    ) -> None:
        last = self._last_sequence
        gap = 1 if last is None else (sequence - last) & 0xFFFF
        if gap == 0 or gap >= 0x8000 or sequence in self._waiting:
            self.counters.not_relayed += 1  # late or duplicated: its time has passed
            return
        if 1 < gap <= MAX_CONCEALED + 1:
            # A gap: the missing packet may only be late (reordered on the browser's path), so this
            # one waits for it a packet's time before the gap is concealed.
            self._waiting[sequence] = (marker, timestamp, payload, now)
            if self._wait_timer is None:
                self._wait_timer = self._schedule(REORDER_WAIT, self._give_up)
            return
        if gap > 1:
            # An outage, not loss: what waited is played, then the stream goes on from here.
            self._give_up()
        self._play(target, marker, sequence, timestamp, source, payload, now, 0)
        self._drain(target, source)

    def _drain(self, target: Target | None, source: int) -> None:
        """Play the waiting packets that now follow on without a gap."""
        waiting = self._waiting
        while waiting and self._last_sequence is not None:
            following = (self._last_sequence + 1) & 0xFFFF
            held = waiting.pop(following, None)
            if held is None:
                return
            marker, timestamp, payload, now = held
            self._play(target, marker, following, timestamp, source, payload, now, 0)
        if not waiting and self._wait_timer is not None:
            self._wait_timer.cancel()
            self._wait_timer = None

    def _give_up(self) -> None:
        """The wait is over: the gaps before the waiting packets are concealed and they are played."""
        self._wait_timer = None
        target, source = self._target, self._last_source
        waiting = self._waiting
        while waiting:
            last = self._last_sequence if self._last_sequence is not None else 0
            sequence = min(waiting, key=lambda waited: (waited - last) & 0xFFFF)
            marker, timestamp, payload, now = waiting.pop(sequence)
            lost = ((sequence - last) & 0xFFFF) - 1
            self._play(target, marker, sequence, timestamp, source or 0, payload, now, lost)
            self._drain(target, source or 0)

    def _play(
        self,
        target: Target | None,
        marker: int,
        sequence: int,
        timestamp: int,
        source: int,
        payload: bytes,
        now: float,
        lost: int,
    ) -> None:
        """Decode one packet (and conceal the ``lost`` before it) and send it as 20 ms of G.711."""
        decoder = self._decoder
        assert decoder is not None
        self._last_sequence = sequence
        pcm: list[bytes] = []
        concealed = 0
        try:
            if 0 < lost <= MAX_CONCEALED:
                for _ in range(lost - 1):
                    pcm.append(decoder.conceal(self._frame_samples))
                pcm.append(decoder.conceal(self._frame_samples, payload))
                concealed = sum(len(chunk) for chunk in pcm) // 2
            decoded = decoder.decode(payload)
        except OpusError:
            self.counters.malformed += 1
            return
        if decoded:
            self._frame_samples = len(decoded) // 2
        pcm.append(decoded)
        # Our timestamp of this packet's first sample; concealed audio goes just before it.
        start = (self._timeline.map(timestamp) - concealed) & _MASK
        table = self._to_law
        assert table is not None
        codes = table[np.frombuffer(b"".join(pcm), np.uint16)].tobytes()
        tap = self.tap
        for offset in range(0, len(codes), FRAME):
            chunk = codes[offset : offset + FRAME]
            chunk_timestamp = (start + offset) & _MASK
            self._out_sequence = (self._out_sequence + 1) & 0xFFFF
            if tap is not None:
                tap.add(self._out_sequence, chunk_timestamp, source, chunk, now)
            if target is None or target.held or target.stream.paused:
                self.counters.not_relayed += 1
                continue
            marked = marker if offset == 0 else 0
            self._send_numbered(target, marked | self._out_audio, chunk_timestamp, source, chunk)
            self.counters.relayed += 1

    def _to_opus(
        self, target: Target | None, marker: int, sequence: int, timestamp: int, source: int, payload: bytes
    ) -> None:
        encoder, table = self._encoder, self._from_law
        assert encoder is not None
        assert table is not None
        last = self._last_sequence
        gap = 1 if last is None else (sequence - last) & 0xFFFF
        if gap == 0 or gap >= 0x8000:
            self.counters.not_relayed += 1
            return
        self._last_sequence = sequence
        if timestamp != self._next_timestamp:
            # A gap (loss, silence suppression) or the first packet: the frame starts here.
            self._buffer.clear()
            self._buffer_timestamp = timestamp
        self._next_timestamp = (timestamp + len(payload)) & _MASK
        self._buffer += table[np.frombuffer(payload, np.uint8)].tobytes()
        # Our sequence numbers keep the carrier's losses visible to the browser's jitter buffer.
        self._out_sequence = (self._out_sequence + gap - 1) & 0xFFFF
        while len(self._buffer) >= _FRAME_BYTES:
            frame = bytes(self._buffer[:_FRAME_BYTES])
            del self._buffer[:_FRAME_BYTES]
            out_timestamp = self._timeline.map(self._buffer_timestamp)
            self._buffer_timestamp = (self._buffer_timestamp + FRAME) & _MASK
            self._out_sequence = (self._out_sequence + 1) & 0xFFFF
            if target is None or target.held or target.stream.paused:
                self.counters.not_relayed += 1
                continue
            try:
                encoded = encoder.encode(frame)
            except OpusError:
                self.counters.malformed += 1
                continue
            self._send_numbered(target, marker | self._out_audio, out_timestamp, source, encoded)
            marker = 0
            self.counters.relayed += 1

    # -- helpers

    def close(self) -> None:
        """The bridge is closing: nothing waits any longer."""
        if self._wait_timer is not None:
            self._wait_timer.cancel()
            self._wait_timer = None
        self._waiting.clear()

    def _restart(self, source: int) -> None:
        """A new source (SSRC) on this leg: its numbering and timing start afresh."""
        if self._waiting:
            self._give_up()  # the old source's last packets, before the new one's
        self._last_source = source
        self._last_sequence = None
        self._next_timestamp = None
        self._buffer.clear()
        self._timeline.reset()

    def _send_numbered(
        self, target: Target, second: int, timestamp: int, source: int, payload: bytes
    ) -> None:
        target.send(target.stream.rewrite(second, self._out_sequence, timestamp, source, payload))

    def _send(self, target: Target, second: int, timestamp: int, source: int, payload: bytes) -> None:
        """An event packet: the next of our sequence numbers."""
        self._out_sequence = (self._out_sequence + 1) & 0xFFFF
        self._send_numbered(target, second, timestamp, source, payload)


__all__ = [
    "COMPLEXITY",
    "FRAME",
    "MAX_CONCEALED",
    "REORDER_WAIT",
    "Schedule",
    "TranscodingRelay",
    "is_opus",
    "transcodes",
]
