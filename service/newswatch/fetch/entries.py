"""Old home of ParsedEntry, now in newswatch.shared_types (the store must not import fetch).

Kept only for fetch/poll.py, which another change is editing at the same time; remove this
module once it imports newswatch.shared_types.
"""

from newswatch.shared_types import ParsedEntry

__all__ = ["ParsedEntry"]
