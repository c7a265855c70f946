"""Media: ICE-lite WebRTC endpoint with DTLS-SRTP and the packet path to the carriers' plain RTP."""
