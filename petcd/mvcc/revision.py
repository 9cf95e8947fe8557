"""Revisions: (main, sub) packed into one int, and their 17-byte backend key encoding.

main is the store revision a write txn creates; sub numbers the changes inside that txn. Packing
them as ``main << 32 | sub`` keeps the order of (main, sub) pairs, and an int costs less memory and
time than a tuple in the key index, which holds one per stored revision.

Backend key: 8-byte big-endian main, ``_``, 8-byte big-endian sub (17 bytes), plus a trailing
``t`` for a tombstone (a delete). Big-endian makes byte order equal revision order, so revision
keys only grow and LMDB's append mode applies.
"""

from __future__ import annotations

import struct

SUB_BITS = 32
SUB_MASK = (1 << SUB_BITS) - 1
REV_BYTES_LEN = 17
TOMBSTONE_MARK = b"t"

_REV = struct.Struct(">QBQ")
_SEP = 0x5F  # "_"


def pack(main: int, sub: int = 0) -> int:
    return (main << SUB_BITS) | sub


def main_of(rev: int) -> int:
    return rev >> SUB_BITS


def sub_of(rev: int) -> int:
    return rev & SUB_MASK


def bound(main: int) -> int:
    """The smallest packed revision with a main revision above main: r < bound(m) <=> main_of(r) <= m."""
    return (main + 1) << SUB_BITS


def rev_to_bytes(rev: int, tombstone: bool = False) -> bytes:
    b = _REV.pack(rev >> SUB_BITS, _SEP, rev & SUB_MASK)
    return b + TOMBSTONE_MARK if tombstone else b


def bytes_to_rev(b: bytes) -> int:
    main, _, sub = _REV.unpack_from(b)
    return int((main << SUB_BITS) | sub)


def is_tombstone(b: bytes) -> bool:
    return len(b) == REV_BYTES_LEN + 1 and b[REV_BYTES_LEN] == TOMBSTONE_MARK[0]
