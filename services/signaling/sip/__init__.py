"""SIP stack (RFC 3261): one module per protocol object."""
