"""SIP transports (RFC 3261 18, RFC 7118): they move bytes and nothing else.

UDP, TCP, TLS, WS and WSS listeners hand whole parsed messages, with the :class:`Flow` they came
on, to the SIP core; the core answers on the same flow. A request that does not parse is answered
400 here (the reason names the fault) and a broken response is dropped, so malformed input never
reaches the core.
"""
