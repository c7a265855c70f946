"""Digest authentication cost on the registrar: microseconds per challenge and per verify.

Run: ``python bench/sip_auth.py [--iterations N]``. Prints p50/p99; asserts nothing.
Each verify is a fresh, correct REGISTER credential (new nonce-count), so it takes the full path:
parse, nonce HMAC, HA1 lookup, digest, constant-time compare, replay bookkeeping.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from services.signaling.sip.auth import Algorithm, DigestClient, DigestOk, DigestServer, ha1, parse_challenges

REALM = "pbx.echodesk.bench"
URI = "sip:pbx.echodesk.bench"


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


def bench_verify(algorithm: Algorithm, iterations: int) -> list[int]:
    server = DigestServer(REALM, b"bench-secret-0123456789abcdef", algorithms=(algorithm,))
    stored = {("agent100", algorithm): ha1("agent100", REALM, "s3cret", algorithm)}
    client = DigestClient("agent100", password="s3cret")
    now = 1_000.0
    # One nonce per 100 requests, as agents reusing a nonce with rising nc do between expiries.
    values: list[str] = []
    while len(values) < iterations:
        challenge = client.choose(parse_challenges(*server.challenges(now)))
        values.extend(client.authorization(challenge, "REGISTER", URI) for _ in range(100))

    def lookup(username: str, algo: Algorithm) -> str | None:
        return stored.get((username, algo))

    samples: list[int] = []
    for value in values:
        start = time.perf_counter_ns()
        result = server.verify(value, "REGISTER", now, lookup)
        samples.append(time.perf_counter_ns() - start)
        if not isinstance(result, DigestOk):
            raise SystemExit(f"verify failed: {result}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20_000)
    iterations = parser.parse_args().iterations

    print(f"{'operation':<34} {'p50 us':>8} {'p99 us':>8}   ({iterations} iterations)")
    for algorithm in (Algorithm.MD5, Algorithm.SHA256):
        p50, p99 = percentiles(bench_verify(algorithm, iterations))
        print(f"{'verify ' + algorithm.value:<34} {p50:>8.2f} {p99:>8.2f}")
    server = DigestServer(REALM, b"bench-secret-0123456789abcdef")
    p50, p99 = percentiles(timed(lambda: server.challenges(1_000.0), iterations))
    print(f"{'challenges (SHA-256 + MD5 values)':<34} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
