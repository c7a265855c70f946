"""API: REST, live events, webhooks and the web UI over the database built from events."""
