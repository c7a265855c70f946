"""Real peers for the tests: nats-server, and helpers to find tools the tests need."""
