"""The back-to-back user agent: calls between agents and carriers, one state machine per call."""
