"""Text messages (RFC 3428 SIP MESSAGE) between agents, and between agents and customers' numbers."""
