"""The contract every EchoDesk Voice service shares: events, subjects, the bus, settings, logging, numbers."""
