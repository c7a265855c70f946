"""One direction of a bridge: RTP from one leg, rewritten into our stream towards another.

The packet path is synchronous: the receiving leg calls :meth:`Relay.receive` from its
``datagram_received`` and the packet leaves through the other leg's ``send_rtp`` before the call
returns; nothing on it waits for the bus or for another task. Per packet it updates the reception
statistics (RFC 3550 appendix A), hands audio to the call's recording fork when the call is
recorded, passes audio with the target's payload type and our stream's sequence numbers,
timestamps and SSRC (G.711 mu-law and A-law translated by table when the legs differ), reports
RFC 4733 digits and relays their events with the target's telephone-event payload type. Anything
else (comfort noise, payload types no leg negotiated) is counted and dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from services.media.dtmf import Digit, DtmfReceiver
from services.media.g711 import translation
from services.media.recording_fork import LegTap
from services.media.rtp import FIELDS, OutboundStream, ReceptionStats, payload_bounds
from shared.sdp import Codec


@dataclass(slots=True)
class RelayCounters:
    relayed: int = 0
    events_relayed: int = 0
    #: Events the target cannot take: it negotiated no telephone-event (reported as digits still).
    events_dropped: int = 0
    #: Packets with nowhere to go: the target is not negotiated yet, held, or busy with our DTMF.
    not_relayed: int = 0
    #: Payload types other than the negotiated audio and telephone-event.
    other_dropped: int = 0
    malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Target:
    """Where a relay sends: a leg's send function, our stream towards it, its payload types."""

    __slots__ = ("audio", "event", "held", "send", "stream")

    def __init__(
        self, send: Callable[[bytes], bool], stream: OutboundStream, audio: Codec, event: Codec | None
    ) -> None:
        self.send = send
        self.stream = stream
        self.audio = audio
        self.event = event
        #: Signaling holds this leg: nothing is sent to it.
        self.held = False


class Relay:
    """RTP of one leg, with its codecs as negotiated, towards a :class:`Target` (or nowhere yet)."""

    __slots__ = (
        "_audio_pt",
        "_event_pt",
        "_on_digit",
        "_out_audio",
        "_out_event",
        "_table",
        "_target",
        "audio",
        "clock",
        "counters",
        "dtmf",
        "event",
        "stats",
        "tap",
    )

    def __init__(
        self,
        audio: Codec,
        event: Codec | None,
        on_digit: Callable[[Digit], None],
        *,
        stats: ReceptionStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audio = audio
        self.event = event
        self.counters = RelayCounters()
        self.stats = stats if stats is not None else ReceptionStats(audio.clock_rate)
        self.stats.clock_rate = audio.clock_rate
        self.dtmf = DtmfReceiver(event.clock_rate if event is not None else audio.clock_rate)
        self.clock = clock
        self._audio_pt = audio.payload_type
        self._event_pt = event.payload_type if event is not None else -1
        self._on_digit = on_digit
        self._target: Target | None = None
        self._table: bytes | None = None
        self._out_audio = 0
        self._out_event: int | None = None
        #: The recording fork of this leg's audio (a recorded call), fed before any relay decision.
        self.tap: LegTap | None = None

    def connect(self, target: Target) -> None:
        """Send to ``target`` from now on; raises ValueError when its codec needs transcoding."""
        if target.audio.clock_rate != self.audio.clock_rate:
            raise ValueError(f"{self.audio} -> {target.audio} needs transcoding")
        self._table = translation(self.audio.name, target.audio.name)
        self._out_audio = target.audio.payload_type
        self._out_event = target.event.payload_type if target.event is not None else None
        self._target = target

    @property
    def target(self) -> Target | None:
        return self._target

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
            tap = self.tap
            if tap is not None:
                tap.add(sequence, timestamp, source, payload, now)
            if target is None or target.held or target.stream.paused:
                self.counters.not_relayed += 1
                return
            table = self._table
            if table is not None:
                payload = payload.translate(table)
            target.send(
                target.stream.rewrite((second & 0x80) | self._out_audio, sequence, timestamp, source, payload)
            )
            self.counters.relayed += 1
        elif payload_type == self._event_pt:
            payload = packet[bounds[0] : bounds[1]]
            digit = self.dtmf.receive(payload, timestamp, source)
            if digit is not None:
                self._on_digit(digit)
            out_event = self._out_event
            if target is None or target.held or target.stream.paused:
                self.counters.not_relayed += 1
            elif out_event is None:
                self.counters.events_dropped += 1
            else:
                target.send(
                    target.stream.rewrite((second & 0x80) | out_event, sequence, timestamp, source, payload)
                )
                self.counters.events_relayed += 1
        else:
            self.counters.other_dropped += 1


__all__ = ["Relay", "RelayCounters", "Target"]
