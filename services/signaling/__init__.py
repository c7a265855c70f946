"""Signaling: the SIP stack (UDP, TCP, TLS, WS, WSS), registrar, trunk registration, dial plan, B2BUA."""
