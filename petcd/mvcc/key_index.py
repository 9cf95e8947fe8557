"""The history of one key: its generations of revisions.

A key's life is a sequence of *generations*. A generation starts with the put that creates the
key, holds every revision that modified it, and ends with the revision of the delete that removed
it (its *tombstone*). After a tombstone an empty generation is opened, ready for the next create.
Only the last generation can be empty, and only the last one can be without a tombstone.

Revisions are packed ints (``petcd.mvcc.revision``); below they are written main.sub.

Worked example: on key "k": put at 2.0, put at 4.0, delete at 6.0, put at 8.0, put at 9.0::

    generations: [ {created 2.0, ver 3, revs [2.0, 4.0, 6.0(t)]},
                   {created 8.0, ver 2, revs [8.0, 9.0]} ]

``get(at)`` answers "what was the key at main revision at":

* get(1): before the first generation -> not found.
* get(5): generation 1, last revision <= 5 is 4.0 -> (mod 4.0, created 2.0, version 2).
  The version of a revision is its 1-based position in its generation.
* get(6), get(7): generation 1 ended with its tombstone 6.0 <= at -> not found (deleted).
* get(9): generation 2 -> (mod 9.0, created 8.0, version 2).

``compact(at, keep)`` drops what no read at a revision >= at can see, and adds to keep the
revisions whose backend records must stay:

* compact(5): generation 1 is still live at 5; its last revision <= 5 is 4.0, so 2.0 goes and
  4.0 is kept: [{revs [4.0, 6.0(t)]}, {revs [8.0, 9.0]}]; keep += {4.0}.
* then compact(7): generation 1 ended at 6 <= 7 and is dropped whole (tombstone included);
  nothing of generation 2 is <= 7: [{revs [8.0, 9.0]}]; keep += {}.
* then compact(9): [{revs [9.0]}]; keep += {9.0}.
* A key whose only generation left is the empty one (deleted at or before at, nothing since) has
  nothing left; the tree index then forgets the key.

Rebuilding from the backend after a restart sees only the revisions compaction kept, so the first
generation seen for a key may start mid-way: ``restore`` takes its create revision and version from
the stored KeyValue instead of counting them.
"""

from __future__ import annotations

from bisect import bisect_left

from petcd.mvcc.errors import RevisionNotFoundError
from petcd.mvcc.revision import bound, main_of, pack


class Generation:
    """One life of a key: created at created, modified at revs (the last may be a tombstone)."""

    __slots__ = ("created", "revs", "ver")

    def __init__(self, ver: int = 0, created: int = 0, revs: list[int] | None = None) -> None:
        self.ver = ver  # the version at the last revision
        self.created = created
        self.revs: list[int] = revs if revs is not None else []

    def __repr__(self) -> str:
        return f"Generation(ver={self.ver}, created={self.created:#x}, revs={[hex(r) for r in self.revs]})"


class KeyIndex:
    """The generations of one key (see the module docstring)."""

    __slots__ = ("generations", "key", "modified")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.modified = 0
        self.generations: list[Generation] = [Generation()]

    def is_empty(self) -> bool:
        return len(self.generations) == 1 and not self.generations[0].revs

    def put(self, rev: int) -> None:
        """Record a put at rev, which must be above every revision already recorded."""
        if rev <= self.modified:
            raise ValueError(f"put of {self.key!r} at {rev:#x} not after {self.modified:#x}")
        g = self.generations[-1]
        if not g.revs:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    def tombstone(self, rev: int) -> None:
        """Record a delete at rev: it ends the current generation."""
        if not self.generations[-1].revs:
            raise RevisionNotFoundError()
        self.put(rev)
        self.generations.append(Generation())

    def restore(self, rev: int, create_main: int, version: int) -> None:
        """Record a put read back from the backend, whose KeyValue says the key was created at
        main revision create_main and is at version version."""
        if rev <= self.modified:
            raise ValueError(f"restore of {self.key!r} at {rev:#x} not after {self.modified:#x}")
        g = self.generations[-1]
        if not g.revs:
            g.created = rev if main_of(rev) == create_main else pack(create_main)
        g.revs.append(rev)
        g.ver = version
        self.modified = rev

    def _find_generation(self, b: int) -> Generation | None:
        """The generation holding the key's state at main revisions < bound b, or None if the key
        did not exist then."""
        gens = self.generations
        last = len(gens) - 1
        for i in range(last, -1, -1):
            g = gens[i]
            revs = g.revs
            if not revs:
                continue
            if i != last and revs[-1] < b:
                return None  # the generation that was live at b ended at or before it
            if revs[0] < b:
                return g
        return None

    def get(self, at: int) -> tuple[int, int, int] | None:
        """(mod revision, created revision, version) of the key at main revision at, or None."""
        b = bound(at)
        g = self.generations[-1]
        revs = g.revs
        if revs and revs[-1] < b:  # fast path: the key is live and unchanged since at
            return revs[-1], g.created, g.ver
        found = self._find_generation(b)
        if found is None:
            return None
        revs = found.revs
        n = bisect_left(revs, b) - 1
        return revs[n], found.created, found.ver - (len(revs) - n - 1)

    def _compact_point(self, b: int) -> tuple[int, int]:
        """(generation index, revision index) of the revision a compaction below bound b keeps:
        skip the generations whose tombstone is below b, then the last revision below b in the
        next one (-1 if none)."""
        gens = self.generations
        i = 0
        while i < len(gens) - 1 and gens[i].revs[-1] < b:
            i += 1
        return i, bisect_left(gens[i].revs, b) - 1

    def compact(self, at: int, keep: set[int]) -> None:
        """Drop the revisions no read at main revision >= at can see; add the one still visible
        at at (if the key is live then) to keep."""
        i, n = self._compact_point(bound(at))
        g = self.generations[i]
        if n >= 0:
            keep.add(g.revs[n])
            del g.revs[:n]
        if i:
            del self.generations[:i]

    def keep(self, at: int, keep: set[int]) -> None:
        """Add to keep what compact(at, keep) would, without changing anything."""
        if self.is_empty():
            return
        i, n = self._compact_point(bound(at))
        if n >= 0:
            keep.add(self.generations[i].revs[n])

    def __repr__(self) -> str:
        return f"KeyIndex({self.key!r}, modified={self.modified:#x}, {self.generations})"
