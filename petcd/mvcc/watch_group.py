"""Sets of watchers indexed by what they watch, to find the watchers an event's key concerns.

Key ranges follow the store's convention: ``end == b""`` is the key alone, ``end == b"\\x00"``
every key >= key, anything else ``[key, end)``. Single-key watchers (by far the most common)
are found with one dict lookup; range watchers are grouped by their distinct range, so a thousand
watchers on one prefix cost one comparison per event, not a thousand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

FROM_KEY = b"\x00"


class Ranged(Protocol):
    @property
    def key(self) -> bytes: ...

    @property
    def end(self) -> bytes: ...


W = TypeVar("W", bound=Ranged)


class WatcherGroup(Generic[W]):
    """A set of watchers, iterable in insertion order, with lookup by event key."""

    __slots__ = ("_all", "_keys", "_ranges")

    def __init__(self) -> None:
        self._keys: dict[bytes, dict[W, None]] = {}
        self._ranges: dict[tuple[bytes, bytes], dict[W, None]] = {}
        self._all: dict[W, None] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __bool__(self) -> bool:
        return bool(self._all)

    def __contains__(self, w: object) -> bool:
        return w in self._all

    def __iter__(self) -> Iterator[W]:
        return iter(self._all)

    def add(self, w: W) -> None:
        if w in self._all:
            return
        self._all[w] = None
        if w.end:
            self._ranges.setdefault((w.key, w.end), {})[w] = None
        else:
            self._keys.setdefault(w.key, {})[w] = None

    def discard(self, w: W) -> bool:
        if w not in self._all:
            return False
        del self._all[w]
        if w.end:
            rk = (w.key, w.end)
            ws = self._ranges.get(rk)
            if ws is not None:
                ws.pop(w, None)
                if not ws:
                    del self._ranges[rk]
        else:
            ws = self._keys.get(w.key)
            if ws is not None:
                ws.pop(w, None)
                if not ws:
                    del self._keys[w.key]
        return True

    def matching(self, k: bytes) -> Iterator[W]:
        """Every watcher whose range holds key k (each once)."""
        ws = self._keys.get(k)
        if ws:
            yield from ws
        for (key, end), rws in self._ranges.items():
            if k >= key and (end == FROM_KEY or k < end):
                yield from rws
