"""SDP a real Chromium sends, shared by the SDP tests and the SDP benchmark."""

FINGERPRINT = (
    "6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08"
)
#: Extensions Chromium writes on every candidate.
EXT = "generation 0 network-id 1 network-cost 10"

# Chromium's audio-only offer once ICE gathering is complete (what SIP.js sends by default): default
# candidate in m=/c=, candidates after a=rtcp, opus with RED, G.722, G.711, CN and telephone-event at
# both clock rates. Addresses are documentation ranges (RFC 5737).
CHROMIUM_OFFER = f"""\
v=0
o=- 8817357382961335066 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS 5c1c4b0e-8a1f-4a4e-9c07-3d1c3e0f6a21
m=audio 61864 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 203.0.113.45
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:2027323456 1 udp 2122260223 192.168.1.23 61864 typ host {EXT}
a=candidate:3412873624 1 tcp 1518280447 192.168.1.23 9 typ host tcptype active {EXT}
a=candidate:1876313031 1 udp 1686052607 203.0.113.45 61864 typ srflx raddr 192.168.1.23 rport 61864 {EXT}
a=candidate:4184350395 1 udp 41885695 198.51.100.20 50123 typ relay raddr 203.0.113.45 rport 61864 {EXT}
a=ice-ufrag:Lx1e
a=ice-pwd:T6Ykyh3ZJrHcLcn8pWDd3Q0s
a=ice-options:trickle
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=msid:5c1c4b0e-8a1f-4a4e-9c07-3d1c3e0f6a21 7f3e9d52-0a6b-4c1e-b4a5-9e2f1c8d3b70
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:3735928559 cname:Wq3Ptm4b0MZvG4n7
a=ssrc:3735928559 msid:5c1c4b0e-8a1f-4a4e-9c07-3d1c3e0f6a21 7f3e9d52-0a6b-4c1e-b4a5-9e2f1c8d3b70
"""
