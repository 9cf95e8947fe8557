"""Unique ids for requests and leases, in etcd's layout.

An id is ``member-id low 16 bits | 40 bits of milliseconds at start | 8-bit counter``;
the counter carries into the time bits, so ids never repeat within one member's life
and differ across members. The start time is passed in so the generator is testable.
"""

from __future__ import annotations

_TS_BITS = 40
_CNT_BITS = 8
_SUFFIX_BITS = _TS_BITS + _CNT_BITS
_SUFFIX_MASK = (1 << _SUFFIX_BITS) - 1


class IdGenerator:
    def __init__(self, member_id: int, start_ms: int) -> None:
        self._prefix = (member_id & 0xFFFF) << _SUFFIX_BITS
        self._suffix = ((start_ms & ((1 << _TS_BITS) - 1)) << _CNT_BITS) & _SUFFIX_MASK

    def next(self) -> int:
        self._suffix = (self._suffix + 1) & _SUFFIX_MASK
        return self._prefix | self._suffix
