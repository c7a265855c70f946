"""Trunks: our side of the carriers' SIP service (registration, reachability)."""
