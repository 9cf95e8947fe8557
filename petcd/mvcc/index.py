"""The in-memory index from keys to their KeyIndex, ordered for range scans.

A dict finds a key; a sorted list of the keys serves ranges. Key ranges follow etcd: end == b""
is the single key, end == b"\\x00" is every key >= key, otherwise [key, end).
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from petcd.mvcc.errors import RevisionNotFoundError
from petcd.mvcc.key_index import KeyIndex

SINGLE_KEY = b""
FROM_KEY = b"\x00"


class TreeIndex:
    def __init__(self) -> None:
        self._map: dict[bytes, KeyIndex] = {}
        self._keys = SortedList()

    def __len__(self) -> int:
        return len(self._map)

    def key_index(self, key: bytes) -> KeyIndex | None:
        return self._map.get(key)

    def _insert(self, key: bytes) -> KeyIndex:
        ki = KeyIndex(key)
        self._map[key] = ki
        self._keys.add(key)
        return ki

    def get(self, key: bytes, at: int) -> tuple[int, int, int] | None:
        """(mod revision, created revision, version) of key at main revision at, or None."""
        ki = self._map.get(key)
        return None if ki is None else ki.get(at)

    def put(self, key: bytes, rev: int) -> None:
        ki = self._map.get(key)
        if ki is None:
            ki = self._insert(key)
        ki.put(rev)

    def tombstone(self, key: bytes, rev: int) -> None:
        ki = self._map.get(key)
        if ki is None:
            raise RevisionNotFoundError()
        ki.tombstone(rev)

    def restore(self, key: bytes, rev: int, create_main: int, version: int) -> None:
        ki = self._map.get(key)
        if ki is None:
            ki = self._insert(key)
        ki.restore(rev, create_main, version)

    def restore_tombstone(self, key: bytes, rev: int) -> None:
        """A tombstone read back from the backend; one whose key has no live generation left
        (its puts were compacted away) carries nothing and is skipped."""
        ki = self._map.get(key)
        if ki is not None and ki.generations[-1].revs:
            ki.tombstone(rev)

    def _key_indexes(self, key: bytes, end: bytes) -> Iterator[KeyIndex]:
        if end == SINGLE_KEY:
            ki = self._map.get(key)
            if ki is not None:
                yield ki
            return
        if end == FROM_KEY:
            keys = self._keys.irange(minimum=key)
        elif end <= key:
            return
        else:
            keys = self._keys.irange(key, end, inclusive=(True, False))
        m = self._map
        for k in keys:
            yield m[k]

    def revisions(self, key: bytes, end: bytes, at: int, limit: int = 0) -> tuple[list[int], int]:
        """Mod revisions of the keys in the range live at main revision at, in key order, at most
        limit of them (0 = all), and the count of all such keys."""
        revs: list[int] = []
        total = 0
        for ki in self._key_indexes(key, end):
            found = ki.get(at)
            if found is None:
                continue
            total += 1
            if not limit or len(revs) < limit:
                revs.append(found[0])
        return revs, total

    def count(self, key: bytes, end: bytes, at: int) -> int:
        return sum(1 for ki in self._key_indexes(key, end) if ki.get(at) is not None)

    def live(self, key: bytes, end: bytes, at: int) -> list[tuple[bytes, int]]:
        """(key, mod revision) of the keys in the range live at main revision at."""
        out: list[tuple[bytes, int]] = []
        for ki in self._key_indexes(key, end):
            found = ki.get(at)
            if found is not None:
                out.append((ki.key, found[0]))
        return out

    def compact(self, at: int) -> set[int]:
        """Compact every key at main revision at (forgetting keys with nothing left); returns the
        revisions <= at whose backend records must be kept."""
        keep: set[int] = set()
        empty: list[bytes] = []
        for k, ki in self._map.items():
            ki.compact(at, keep)
            if ki.is_empty():
                empty.append(k)
        for k in empty:
            del self._map[k]
            self._keys.remove(k)
        return keep

    def keep(self, at: int) -> set[int]:
        """The revisions compact(at) would keep, without compacting."""
        keep: set[int] = set()
        for ki in self._map.values():
            ki.keep(at, keep)
        return keep
