"""The in-memory index from keys to their KeyIndex, ordered for range scans.

A dict finds a key; a sorted list of all indexed keys serves ranges at past revisions, which look
at each key in the range. A second sorted list holds the keys live at the newest revision: reads
at that revision (nearly all of them) count the keys of a range by bisection and visit only the
`limit` keys they return, so a paginated list costs O(limit + log n), not O(keys in the range).

Key ranges follow etcd: end == b"" is the single key, end == b"\\x00" is every key >= key,
otherwise [key, end).
"""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from petcd.mvcc.errors import RevisionNotFoundError
from petcd.mvcc.key_index import KeyIndex
from petcd.mvcc.revision import main_of

SINGLE_KEY = b""
FROM_KEY = b"\x00"


class TreeIndex:
    def __init__(self) -> None:
        self._map: dict[bytes, KeyIndex] = {}
        self._keys = SortedList()  # every indexed key
        self._live = SortedList()  # keys whose last generation is open (live now)
        self._newest = 0  # the newest main revision recorded

    def __len__(self) -> int:
        return len(self._map)

    def key_index(self, key: bytes) -> KeyIndex | None:
        return self._map.get(key)

    def _key_index_for_put(self, key: bytes) -> KeyIndex:
        ki = self._map.get(key)
        if ki is None:
            ki = KeyIndex(key)
            self._map[key] = ki
            self._keys.add(key)
        if not ki.generations[-1].revs:
            self._live.add(key)
        return ki

    def get(self, key: bytes, at: int) -> tuple[int, int, int] | None:
        """(mod revision, created revision, version) of key at main revision at, or None."""
        ki = self._map.get(key)
        return None if ki is None else ki.get(at)

    def put(self, key: bytes, rev: int) -> None:
        self._key_index_for_put(key).put(rev)
        main = main_of(rev)
        if main > self._newest:
            self._newest = main

    def tombstone(self, key: bytes, rev: int) -> None:
        ki = self._map.get(key)
        if ki is None:
            raise RevisionNotFoundError()
        ki.tombstone(rev)
        self._live.remove(key)
        self._newest = max(self._newest, main_of(rev))

    def restore(self, key: bytes, rev: int, create_main: int, version: int) -> None:
        self._key_index_for_put(key).restore(rev, create_main, version)
        self._newest = max(self._newest, main_of(rev))

    def restore_tombstone(self, key: bytes, rev: int) -> None:
        """A tombstone read back from the backend; one whose key has no live generation left
        (its puts were compacted away) carries nothing and is skipped."""
        ki = self._map.get(key)
        if ki is not None and ki.generations[-1].revs:
            self.tombstone(key, rev)

    # -- ranges --------------------------------------------------------------------------------

    def _live_bounds(self, key: bytes, end: bytes) -> tuple[int, int]:
        """Positions [lo, hi) in the live list of the keys in the range (end != SINGLE_KEY)."""
        live = self._live
        if end == FROM_KEY:
            return live.bisect_left(key), len(live)
        if end <= key:
            return 0, 0
        return live.bisect_left(key), live.bisect_left(end)

    def _range_keys(self, key: bytes, end: bytes) -> Iterable[bytes]:
        """All indexed keys in the range (end != SINGLE_KEY), in order."""
        if end == FROM_KEY:
            return self._keys.irange(minimum=key)  # type: ignore[no-any-return]
        if end <= key:
            return ()
        return self._keys.irange(key, end, inclusive=(True, False))  # type: ignore[no-any-return]

    def revisions(self, key: bytes, end: bytes, at: int, limit: int = 0) -> tuple[list[int], int]:
        """Mod revisions of the keys in the range live at main revision at, in key order, at most
        limit of them (0 = all), and the count of all such keys."""
        if end == SINGLE_KEY:
            found = self.get(key, at)
            return ([], 0) if found is None else ([found[0]], 1)
        m = self._map
        if at >= self._newest:
            lo, hi = self._live_bounds(key, end)
            stop = min(hi, lo + limit) if limit > 0 else hi
            keys = self._live.islice(lo, stop) if stop > lo else ()
            return [m[k].generations[-1].revs[-1] for k in keys], hi - lo
        revs: list[int] = []
        total = 0
        for k in self._range_keys(key, end):
            found = m[k].get(at)
            if found is None:
                continue
            total += 1
            if limit <= 0 or len(revs) < limit:
                revs.append(found[0])
        return revs, total

    def count(self, key: bytes, end: bytes, at: int) -> int:
        if end == SINGLE_KEY:
            return 0 if self.get(key, at) is None else 1
        if at >= self._newest:
            lo, hi = self._live_bounds(key, end)
            return hi - lo
        m = self._map
        return sum(1 for k in self._range_keys(key, end) if m[k].get(at) is not None)

    def live(self, key: bytes, end: bytes, at: int) -> list[tuple[bytes, int]]:
        """(key, mod revision) of the keys in the range live at main revision at."""
        if end == SINGLE_KEY:
            found = self.get(key, at)
            return [] if found is None else [(key, found[0])]
        m = self._map
        if at >= self._newest:
            lo, hi = self._live_bounds(key, end)
            keys = list(self._live.islice(lo, hi)) if hi > lo else []
            return [(k, m[k].generations[-1].revs[-1]) for k in keys]
        out: list[tuple[bytes, int]] = []
        for k in self._range_keys(key, end):
            found = m[k].get(at)
            if found is not None:
                out.append((k, found[0]))
        return out

    # -- compaction ----------------------------------------------------------------------------

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
