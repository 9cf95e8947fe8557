"""Key-range permissions: a user's roles merged into one read set and one write set.

etcd's permission model, in terms of key intervals:

* a permission with no ``range_end`` grants one key, ``[key, key + b"\\0")``;
* ``range_end == b"\\0"`` grants every key from ``key`` on (``[key, ∞)``);
* otherwise it grants ``[key, range_end)``.

An empty bound means +∞ in etcd's byte intervals, so a permission whose ``key`` is empty grants
nothing (etcdctl sends ``b"\\0"`` for "every key"), and neither does one whose end is not past its
start. A request is checked the same way:

* no ``range_end``: the key must lie in some granted interval;
* ``range_end == b"\\0"``: ``[key, ∞)`` must be covered;
* otherwise ``[key, range_end)`` must be covered by the union of the granted intervals (touching
  intervals join: ``[a, b)`` and ``[b, c)`` cover ``[a, c)``). A request whose end is not past its
  key asks for no more than the key itself. A request with an empty key is never granted.

:class:`IntervalSet` keeps the union as sorted, disjoint, non-touching intervals, so either check
is one binary search.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from petcd.proto.authpb import auth_pb2 as authpb

READ = authpb.Permission.READ
WRITE = authpb.Permission.WRITE
READWRITE = authpb.Permission.READWRITE

# An interval's end; None is +∞.
End = bytes | None


def permission_interval(key: bytes, range_end: bytes) -> tuple[bytes, End] | None:
    """The interval a permission grants, or None if it grants nothing."""
    if not key:
        return None
    if not range_end:
        return key, key + b"\x00"
    if range_end == b"\x00":
        return key, None
    if range_end <= key:
        return None
    return key, range_end


class IntervalSet:
    """A union of half-open byte-key intervals, as sorted disjoint non-touching intervals."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, intervals: Iterable[tuple[bytes, End]] = ()) -> None:
        merged: list[tuple[bytes, End]] = []
        for start, end in sorted(intervals, key=lambda iv: iv[0]):
            if merged:
                last_start, last_end = merged[-1]
                # joins when it starts at or before the last end (touching counts)
                if last_end is None or start <= last_end:
                    if last_end is not None and (end is None or end > last_end):
                        merged[-1] = (last_start, end)
                    continue
            merged.append((start, end))
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]

    def intervals(self) -> list[tuple[bytes, End]]:
        return list(zip(self._starts, self._ends, strict=True))

    def _containing(self, key: bytes) -> int:
        """The index of the interval holding key, or -1."""
        i = bisect.bisect_right(self._starts, key) - 1
        if i < 0:
            return -1
        end = self._ends[i]
        return i if end is None or key < end else -1

    def covers(self, key: bytes, range_end: bytes) -> bool:
        """Whether a request for ``key`` / ``range_end`` (etcd's encoding) is wholly inside."""
        if not key:
            return False
        if not range_end:
            return self._containing(key) >= 0
        i = self._containing(key)
        if i < 0:
            return False
        end = self._ends[i]
        if range_end == b"\x00":
            return end is None
        if range_end <= key:
            return True
        return end is None or range_end <= end


@dataclass(frozen=True, slots=True)
class MergedPermissions:
    """What one user may read and write: the union over all of the user's roles."""

    read: IntervalSet
    write: IntervalSet

    @classmethod
    def from_roles(cls, roles: Iterable[authpb.Role]) -> MergedPermissions:
        reads: list[tuple[bytes, End]] = []
        writes: list[tuple[bytes, End]] = []
        for role in roles:
            for perm in role.keyPermission:
                iv = permission_interval(perm.key, perm.range_end)
                if iv is None:
                    continue
                if perm.permType in (READ, READWRITE):
                    reads.append(iv)
                if perm.permType in (WRITE, READWRITE):
                    writes.append(iv)
        return cls(IntervalSet(reads), IntervalSet(writes))

    def allows(self, perm_type: int, key: bytes, range_end: bytes) -> bool:
        ivs = self.read if perm_type == READ else self.write
        return ivs.covers(key, range_end)
