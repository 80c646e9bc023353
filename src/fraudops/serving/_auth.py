"""A short-lived cache of API-key lookups: one database read per key every few seconds, not
one per request. A revoked key stops working within ``ttl_s`` on every server."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from ._records import ApiKey


class KeyCache:
    """``get(key)`` → the key's record or None, cached by the key's SHA-256 for ``ttl_s``."""

    def __init__(self, lookup: Callable[[str], ApiKey | None], *, ttl_s: float = 5.0,
                 max_entries: int = 10_000) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> ApiKey | None:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self._lookup(key)
        with self._lock:
            if len(self._entries) >= self._max:   # a flood of bad keys must not grow memory
                self._entries.clear()
            self._entries[digest] = (now + self._ttl_s, found)
        return found
