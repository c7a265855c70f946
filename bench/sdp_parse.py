"""SDP cost on the signaling path: microseconds to parse and to serialize Chromium's audio offer.

Run: ``python bench/sdp_parse.py [--iterations N]``. Prints p50/p99; asserts nothing.
The offer is what SIP.js sends once ICE gathering is done (41 lines: four candidates, eight
payload types, extmaps, ssrc lines); parsing validates every known attribute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from shared.sdp import SessionDescription, negotiate_codecs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.sdp_samples import CHROMIUM_OFFER as SAMPLE_OFFER

CHROMIUM_OFFER = SAMPLE_OFFER.replace("\n", "\r\n")  # as it arrives in SIP


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[98] / 1000


def timed(call: Callable[[], object], iterations: int) -> list[int]:
    samples: list[int] = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20_000)
    iterations = parser.parse_args().iterations

    parsed = SessionDescription.parse(CHROMIUM_OFFER)
    if parsed.serialize() != CHROMIUM_OFFER:
        raise SystemExit("the offer does not round-trip")
    audio = parsed.media[0]
    cases: list[tuple[str, Callable[[], object]]] = [
        ("parse", lambda: SessionDescription.parse(CHROMIUM_OFFER)),
        ("serialize", parsed.serialize),
        ("parse + serialize", lambda: SessionDescription.parse(CHROMIUM_OFFER).serialize()),
        ("negotiate_codecs", lambda: negotiate_codecs(audio, ["PCMU", "PCMA", "telephone-event"], limit=1)),
    ]
    lines = CHROMIUM_OFFER.count("\r\n")
    print(f"Chromium audio offer: {lines} lines, {len(CHROMIUM_OFFER)} bytes, {iterations} iterations")
    for name, call in cases:
        timed(call, min(iterations, 1_000))  # warm-up
        p50, p99 = percentiles(timed(call, iterations))
        print(f"{name:<18} p50 {p50:8.1f} us   p99 {p99:8.1f} us")


if __name__ == "__main__":
    main()
