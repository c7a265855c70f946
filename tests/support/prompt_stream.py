"""What a phone heard of an announcement (the demo line), checked as one well-formed RTP stream.

The worker plays the prompt frame by frame on a timer; when its event loop stalls for long it skips
frames rather than bursting them (services/media/announcement.py), so the timestamps jump and the
marker bit says so. A packet's place in the prompt is therefore its timestamp, not its position in
the arrival order: :func:`frames_heard` maps each payload to that place.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from services.media.prompt import FRAME_SAMPLES
from tests.support.rtp_peer import Received


def frame_indexes(received: Sequence[Received]) -> list[int]:
    """Each packet's frame number from the first packet's timestamp (160 units of 8 kHz a frame)."""
    if not received:
        return []
    first = received[0].timestamp
    return [((r.timestamp - first) & 0xFFFFFFFF) // FRAME_SAMPLES for r in received]


def frames_heard(received: Sequence[Received], payload_type: int) -> dict[int, bytes]:
    """Assert ``received`` is one stream of ours (RFC 3550 section 5.1: one SSRC, the payload type,
    20 ms frames, consecutive sequence numbers, timestamps a whole number of frames apart and a jump
    only with the marker bit, which also opens the stream); return the payloads by frame number."""
    assert received
    assert len({r.ssrc for r in received}) == 1
    assert {r.payload_type for r in received} == {payload_type}
    assert {len(r.payload) for r in received} == {FRAME_SAMPLES}
    assert received[0].marker
    for a, b in itertools.pairwise(received):
        assert (b.sequence - a.sequence) & 0xFFFF == 1, (a, b)
        step = (b.timestamp - a.timestamp) & 0xFFFFFFFF
        assert step > 0, (a, b)
        assert step % FRAME_SAMPLES == 0, (a, b)
        assert step == FRAME_SAMPLES or b.marker, (a, b)
    return dict(zip(frame_indexes(received), (r.payload for r in received), strict=True))
