"""One call's recording as a recorder builds it: chunks in, a stereo WAV in the spool, checkpoints.

Chunks come in stream order, which is mostly but not always the worker's order (a chunk published
again after a lost ack). Each is applied once (by its per-call sequence); a chunk that does not
parse is counted and skipped, and nothing else is disturbed. Audio goes through the leg's
:class:`~services.recorder.timeline.LegTimeline` into its channel: the agent left, the customer right.

A checkpoint is the WAV synced to disk plus ``<call>.json`` beside it (written to a temporary file and
renamed, so it is whole or absent): the timelines and the sequences seen. Whoever resumes reads the
stream again and skips those; chunks applied after the checkpoint are applied again, which writes
the same samples to the same places.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.recorder import g711
from services.recorder.timeline import LegTimeline
from services.recorder.wav import StereoWav
from shared.events import LegKind
from shared.recording import AudioChunk, EndOfCall, MalformedChunk, PauseMark, decode, peek_sequence

CHANNEL = {LegKind.AGENT: 0, LegKind.CUSTOMER: 1}
RATE = 8000


class UnsupportedCodec(Exception):
    """The call's audio is in a codec the recorder cannot write: the recording fails with this."""


@dataclass
class Progress:
    """What a checkpoint keeps besides the audio (JSON-able)."""

    call_id: str
    recording_id: str
    tenant_id: str | None = None
    started_at: float | None = None
    frames: int = 0
    timelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    codecs: dict[str, str] = field(default_factory=dict)
    #: Every chunk sequence below this was applied; ``seen`` holds the ones above it.
    seen_below: int = 0
    seen: list[int] = field(default_factory=list)
    #: The PAUSE/RESUME marks applied: [sequence, sample position, 1 paused / 0 resumed].
    marks: list[list[int]] = field(default_factory=list)
    chunks: int = 0
    packets: int = 0
    duplicates: int = 0
    malformed: int = 0
    samples_before_start: int = 0
    #: recording.started was published (a successor does not announce it again).
    announced: bool = False
    #: The END mark: {sequence, arrival_us, chunks_dropped, packets}.
    end: dict[str, int] | None = None


class CallRecording:
    def __init__(self, spool: Path, progress: Progress, *, resume: bool = False) -> None:
        self.spool = spool
        self.progress = progress
        self.wav_path = spool / f"{progress.call_id}.wav"
        self.state_path = spool / f"{progress.call_id}.json"
        self.wav = StereoWav(self.wav_path, RATE, frames=progress.frames if resume else None)
        self.timelines = {
            LegKind(leg): LegTimeline.restore(state) for leg, state in progress.timelines.items()
        }
        self._seen = set(progress.seen)
        self._malformed: set[bytes] = set()
        self.dirty = False

    @classmethod
    def open(cls, spool: Path, call_id: str, recording_id: str) -> tuple[CallRecording, bool]:
        """Resume from the spool's checkpoint of this recording if there is one, else start afresh;
        returns the recording and whether it resumed."""
        spool.mkdir(parents=True, exist_ok=True)
        state = spool / f"{call_id}.json"
        wav = spool / f"{call_id}.wav"
        if state.exists() and wav.exists():
            try:
                progress = Progress(**json.loads(state.read_text()))
            except (ValueError, TypeError):
                progress = None
            if progress is not None and progress.recording_id == recording_id:
                return cls(spool, progress, resume=True), True
        return cls(spool, Progress(call_id=call_id, recording_id=recording_id)), False

    # -- chunks

    def has(self, data: bytes) -> bool:
        """Whether this message is a chunk already applied (read from its header alone)."""
        sequence = peek_sequence(data)
        return sequence is not None and (sequence < self.progress.seen_below or sequence in self._seen)

    @property
    def gaps(self) -> bool:
        """Chunks missing below the newest one applied."""
        return bool(self._seen)

    def apply(self, data: bytes) -> None:
        """Apply one message; raises :class:`MalformedChunk` (counted, nothing else changes) or
        :class:`UnsupportedCodec` (the recording cannot go on)."""
        progress = self.progress
        self.dirty = True
        try:
            chunk = decode(data)
        except MalformedChunk:
            # The same bad message may come live and again from the stream: count it once.
            digest = hashlib.blake2b(data, digest_size=16).digest()
            if digest not in self._malformed:
                self._malformed.add(digest)
                progress.malformed += 1
            raise
        if chunk.sequence < progress.seen_below or chunk.sequence in self._seen:
            progress.duplicates += 1
            return
        if progress.tenant_id is None:
            progress.tenant_id = chunk.tenant_id
            progress.started_at = chunk.started_at
        if isinstance(chunk, AudioChunk):
            self._audio(chunk)
        elif isinstance(chunk, PauseMark):
            self._pause(chunk)
        else:
            self._end(chunk)
        self._mark_seen(chunk.sequence)

    def _audio(self, chunk: AudioChunk) -> None:
        if not g711.supported(chunk.codec):
            raise UnsupportedCodec(
                f"the {chunk.leg.value} leg's codec {chunk.codec} cannot be recorded "
                f"(supported: {', '.join(sorted(g711.SUPPORTED))})"
            )
        progress = self.progress
        progress.codecs[chunk.leg.value] = chunk.codec
        timeline = self.timelines.get(chunk.leg)
        if timeline is None:
            timeline = self.timelines[chunk.leg] = LegTimeline(rate=RATE)
        frames = chunk.frames
        if not frames:
            return
        samples = g711.decode(chunk.codec, b"".join(frame.payload for frame in frames))
        # Consecutive packets (the usual case) make one span: one slice assignment per chunk.
        spans = []
        span_start = span_at = at = 0
        next_position = None
        place = timeline.place
        ssrc = chunk.ssrc
        saved = timeline.saved()
        for frame in frames:
            position = place(ssrc, frame.timestamp, frame.arrival_us)
            if position != next_position:
                if at > span_at:
                    spans.append((span_start, samples[span_at:at]))
                span_start, span_at = position, at
            at += len(frame.payload)
            next_position = position + len(frame.payload)
        spans.append((span_start, samples[span_at:at]))
        try:
            progress.samples_before_start += self.wav.write(CHANNEL[chunk.leg], spans)
        except OSError:
            # Not applied (a full disk): the timeline goes back to before it, so applying it again
            # later places it exactly where it would have gone.
            timeline.restore_from(saved)
            raise
        progress.chunks += 1
        progress.packets += len(frames)

    def _pause(self, mark: PauseMark) -> None:
        position = mark.arrival_us * RATE // 1_000_000
        self.progress.marks.append([mark.sequence, position, int(mark.paused)])
        self._silence_paused()

    def paused_spans(self) -> list[tuple[int, int | None]]:
        """The paused spans (start, end) in samples, end None while paused. Built from the marks in
        the order the worker made them (their sequence), not the order they came in: a chunk read
        from the stream and one coming live can swap, and a RESUME seen before its PAUSE must not
        leave the rest of the call paused."""
        spans: list[tuple[int, int | None]] = []
        for _, position, paused in sorted(self.progress.marks):
            if paused:
                if not spans or spans[-1][1] is not None:
                    spans.append((position, None))
            elif spans and spans[-1][1] is None:
                spans[-1] = (spans[-1][0], position)
        return spans

    @property
    def paused_s(self) -> float:
        """Seconds of the call spent paused (an open span runs to the audio's end)."""
        frames = self.wav.frames
        return round(
            sum((end if end is not None else frames) - start for start, end in self.paused_spans()) / RATE, 3
        )

    def _silence_paused(self, until: int | None = None) -> None:
        """Paused spans are silent even if audio of them arrives (a late chunk from before the pause).
        Closed spans are silenced as they close (writing zeros again is harmless); ``until`` closes
        an open one (the call's end)."""
        for start, end in self.paused_spans():
            end = end if end is not None else until
            if end is not None and end > start:
                quiet = np.zeros(end - start, dtype=np.int16)
                for channel in CHANNEL.values():
                    self.wav.write(channel, [(start, quiet)])

    def _end(self, mark: EndOfCall) -> None:
        self.progress.end = {
            "sequence": mark.sequence,
            "arrival_us": mark.arrival_us,
            "chunks_dropped": mark.chunks_dropped,
            "packets": mark.packets,
        }

    def _mark_seen(self, sequence: int) -> None:
        progress = self.progress
        self._seen.add(sequence)
        while progress.seen_below in self._seen:
            self._seen.discard(progress.seen_below)
            progress.seen_below += 1

    # -- state

    @property
    def ended(self) -> bool:
        return self.progress.end is not None

    @property
    def missing(self) -> int:
        """Chunks before the END mark never seen (dropped by the worker or lost)."""
        end = self.progress.end
        if end is None:
            return 0
        seen = self.progress.seen_below + sum(1 for s in self._seen if s < end["sequence"])
        return max(0, end["sequence"] - seen)

    @property
    def complete(self) -> bool:
        """Everything up to the END mark is in."""
        return self.ended and self.missing == 0

    def snapshot(self) -> dict[str, Any]:
        """The checkpoint's content as of now (on the event loop, while no chunk is being applied),
        the audio buffered so far written to the file first (:class:`OSError` on a full disk: it
        stays buffered, and the checkpoint waits)."""
        self.wav.flush()
        progress = self.progress
        progress.frames = self.wav.frames
        progress.timelines = {leg.value: timeline.state() for leg, timeline in self.timelines.items()}
        progress.seen = sorted(self._seen)
        self.dirty = False
        copied: dict[str, Any] = json.loads(json.dumps(progress.__dict__))
        return copied

    def persist(self, snapshot: dict[str, Any]) -> None:
        """Sync the audio flushed by :meth:`snapshot`, then write ``snapshot`` beside it (blocking:
        run it in a thread).

        Only the audio is synced: a state file that a machine crash loses or leaves behind the audio
        makes the successor replay more, never less, and one it cannot read makes it rebuild from the
        stream. The audio synced may go beyond the snapshot; what is past it is written again,
        identically, on resume."""
        self.wav.sync(snapshot["frames"])
        temporary = self.state_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(snapshot))
        os.replace(temporary, self.state_path)

    def finish(self) -> None:
        """Close the audio at the call's end (silence after the last packet) and sync it."""
        self.wav.flush()
        end = self.progress.end
        if end is not None:
            self.wav.extend_to(end["arrival_us"] * RATE // 1_000_000)
        self._silence_paused(until=self.wav.frames)
        self.wav.flush()
        self.wav.sync()
        self.progress.frames = self.wav.frames

    def close(self) -> None:
        self.wav.close()

    def discard(self) -> None:
        self.close()
        for path in (self.wav_path, self.state_path):
            path.unlink(missing_ok=True)

    def metadata(self) -> dict[str, Any]:
        """What a compliance officer reads beside the audio."""
        progress = self.progress
        return {
            "call_id": progress.call_id,
            "recording_id": progress.recording_id,
            "tenant_id": progress.tenant_id,
            "started_at": progress.started_at,
            "duration_s": round(self.wav.duration_s, 3),
            "channels": {"left": LegKind.AGENT.value, "right": LegKind.CUSTOMER.value},
            "codecs": progress.codecs,
            "paused": [
                {"from_s": round(start / RATE, 3), "to_s": round((end or self.wav.frames) / RATE, 3)}
                for start, end in self.paused_spans()
            ],
            "packets": progress.packets,
            "chunks": progress.chunks,
            "chunks_missing": self.missing,
            "chunks_dropped_by_worker": (progress.end or {}).get("chunks_dropped", 0),
            "duplicates": progress.duplicates,
            "malformed": progress.malformed,
            "end_mark": progress.end is not None,
            "timeline": {
                leg.value: {"resyncs": t.resyncs, "drift_corrected_s": round(t.drift_corrected / RATE, 3)}
                for leg, t in self.timelines.items()
            },
        }


__all__ = ["CallRecording", "Progress", "UnsupportedCodec"]
