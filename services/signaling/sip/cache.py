"""Bounded memoization for the pure parsers whose inputs repeat.

The same URIs and parameter strings come back message after message: the registrar's domain, an
agent's address-of-record and Contact, a carrier's Record-Route. Their parsed forms are immutable,
so one parse can serve every repeat. Only short texts are kept, and the table is emptied when full,
so a flood of distinct values costs memory once and nothing more. Failures are not cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Longest text worth keeping; longer ones are parsed every time.
MAX_KEY_LENGTH = 256
#: Entries per parser before the table is emptied.
MAX_ENTRIES = 4096


def memoized(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` with a bounded cache keyed by its text argument; ``parse`` must return immutable
    values (never None) and depend on nothing but the text."""
    table: dict[str, T] = {}

    def cached(text: str) -> T:
        result = table.get(text)
        if result is None:
            result = parse(text)
            if len(text) <= MAX_KEY_LENGTH:
                if len(table) >= MAX_ENTRIES:
                    table.clear()
                table[text] = result
        return result

    cached.__doc__ = parse.__doc__
    cached.__name__ = parse.__name__
    cached.__qualname__ = parse.__qualname__
    cached.__wrapped__ = parse  # type: ignore[attr-defined]
    return cached
