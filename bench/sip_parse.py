"""How long the SIP message layer takes per message (services/signaling/sip).

Run: ``.venv/bin/python bench/sip_parse.py [iterations]``. Prints, per message kind, parses per
second and the p50/p99 cost of one ``parse_message`` call, the cost of parsing plus reading the
Contact (what a registrar does with every REGISTER), and the cost of ``encode``.
The target is 2000 authenticated REGISTERs per second per core with room for the rest of the work:
parsing should stay in the tens of microseconds.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

from services.signaling.sip import parse_message

# What SIP.js 0.21 sends over WSS when the application sets instanceId and regId, after a 401.
REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/WSS 8v4k2n1q5s3t.invalid;branch=z9hG4bK3926419\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:agent100@pbx.example.com>\r\n"
    b'From: "Agent 100" <sip:agent100@pbx.example.com>;tag=k1s3n5q7vd\r\n'
    b"Call-ID: 5nqc8i0f6ojbrp4cs0e6fu\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b'Authorization: Digest algorithm=MD5, username="agent100", realm="pbx.example.com", '
    b'nonce="Y2M3NzU0ZDQtNTc1Mi00ZGQyLWE0ZjEtZjc0MmIwZGI3ZWM2", uri="sip:pbx.example.com", '
    b'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41", '
    b'qop=auth, cnonce="0a4f113b", nc=00000001\r\n'
    b"Contact: <sip:qv8m3l2k@8v4k2n1q5s3t.invalid;transport=ws>;+sip.ice;reg-id=1;"
    b'+sip.instance="<urn:uuid:5ab5ba43-ff6c-4e5d-9c4b-0a8a4a1c1f3e>";expires=600\r\n'
    b"Expires: 600\r\n"
    b"Allow: ACK,CANCEL,INVITE,MESSAGE,BYE,OPTIONS,INFO,NOTIFY,REFER\r\n"
    b"Supported: path, gruu, outbound\r\n"
    b"User-Agent: SIP.js/0.21.2\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

_SDP = (
    b"v=0\r\n"
    b"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"t=0 0\r\n"
    b"a=group:BUNDLE 0\r\n"
    b"a=msid-semantic: WMS 3f2c\r\n"
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    b"c=IN IP4 0.0.0.0\r\n"
    b"a=rtcp:9 IN IP4 0.0.0.0\r\n"
    b"a=candidate:1 1 udp 2122260223 192.0.2.10 54321 typ host generation 0\r\n"
    b"a=ice-ufrag:Xa9b\r\n"
    b"a=ice-pwd:Yc8dQ1w2e3r4t5y6u7i8o9p0\r\n"
    b"a=ice-options:trickle\r\n"
    b"a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:"
    b"EA:8C:D3:B6:5C:09:5E:E6:BC\r\n"
    b"a=setup:actpass\r\n"
    b"a=mid:0\r\n"
    b"a=sendrecv\r\n"
    b"a=rtcp-mux\r\n"
    b"a=rtpmap:111 opus/48000/2\r\n"
    b"a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:126 telephone-event/8000\r\n"
    b"a=ssrc:1001 cname:4TOk42mSjXCkVIa6\r\n"
)

INVITE = (
    "INVITE sip:+995555123456@pbx.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/WSS 8v4k2n1q5s3t.invalid;branch=z9hG4bK8230511\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:+995555123456@pbx.example.com>\r\n"
    'From: "Agent 100" <sip:agent100@pbx.example.com>;tag=2fb0dcc9k1\r\n'
    "Call-ID: b1kqs4r5m4l8g0n2d1vu\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:qv8m3l2k@8v4k2n1q5s3t.invalid;transport=ws;ob>\r\n"
    "Allow: ACK,CANCEL,INVITE,MESSAGE,BYE,OPTIONS,INFO,NOTIFY,REFER\r\n"
    "Supported: outbound\r\n"
    "User-Agent: SIP.js/0.21.2\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(_SDP)}\r\n"
    "\r\n"
).encode() + _SDP

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-524287-1---a6b8c3e7f1d2;rport=5060\r\n"
    b"Record-Route: <sip:198.51.100.7;lr;ftag=6c3e1b2a>\r\n"
    b"To: <sip:+995555123456@carrier.example.net>;tag=as5f8a2c1b\r\n"
    b"From: <sip:+99532200100@203.0.113.5>;tag=6c3e1b2a\r\n"
    b"Call-ID: 7f3c2a1b9e8d@203.0.113.5\r\n"
    b"CSeq: 102 INVITE\r\n"
    b"Contact: <sip:+995555123456@198.51.100.20:5060>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE\r\n"
    b"Supported: replaces, timer\r\n"
    b"Server: carrier-sbc\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 160\r\n"
    b"\r\n"
    b"v=0\r\no=- 123 456 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n"
    b"m=audio 16384 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)


def _timings(fn: Callable[[], object], iterations: int) -> list[float]:
    for _ in range(min(1000, iterations)):
        fn()
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc.collect()
    for _ in range(iterations):
        t0 = clock()
        fn()
        samples.append((clock() - t0) / 1000)
    return samples


def _report(label: str, samples: list[float]) -> None:
    samples.sort()
    p50 = samples[len(samples) // 2]
    p99 = samples[int(len(samples) * 0.99)]
    per_second = 1e6 / statistics.fmean(samples)
    print(f"{label:<34} {per_second:>10,.0f}/s   p50 {p50:6.1f} us   p99 {p99:6.1f} us")


def _contacts(data: bytes) -> object:
    message = parse_message(data)
    return message.contacts


def _unique(data: bytes, count: int) -> list[bytes]:
    """``count`` copies of ``data`` in which every name, host, tag, branch and Call-ID differs, so no
    parse cache can help: the cost of a flood of strangers."""
    out: list[bytes] = []
    for i in range(count):
        n = f"{i:06d}".encode()
        out.append(
            data.replace(b"agent100", b"ag" + n)
            .replace(b"8v4k2n1q5s3t", b"hx" + n + b"ab")
            .replace(b"pbx.example.com", b"pbx" + n + b".example")
            .replace(b"carrier.example.net", b"car" + n + b".example.net")
            .replace(b"198.51.100", b"198.51." + str(i % 250).encode())
            .replace(b"z9hG4bK", b"z9hG4bK" + n)
            .replace(b";tag=", b";tag=" + n)
            .replace(b"Call-ID: ", b"Call-ID: " + n)
        )
    return out


def _cold(messages: list[bytes], action: Callable[[bytes], object]) -> list[float]:
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc.collect()
    for data in messages:
        t0 = clock()
        action(data)
        samples.append((clock() - t0) / 1000)
    return samples


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(f"python {sys.version.split()[0]}, {iterations} iterations each")
    kinds = (("REGISTER (SIP.js, Authorization)", REGISTER), ("INVITE with SDP", INVITE), ("200 OK", OK_200))
    for label, data in kinds:
        print(f"-- {label}: {len(data)} bytes")
        _report("parse_message, same bytes", _timings(partial(parse_message, data), iterations))
        _report("parse_message, all values new", _cold(_unique(data, iterations), parse_message))
        _report("parse + Contact, same bytes", _timings(partial(_contacts, data), iterations))
        _report("parse + Contact, all values new", _cold(_unique(data, iterations), _contacts))
        message = parse_message(data)
        _report("encode", _timings(message.encode, iterations))


if __name__ == "__main__":
    main()
