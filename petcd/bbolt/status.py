"""etcd's `snapshot status` figures for a bbolt file: hash, revision, total keys, total size.

As etcdutl 3.5.1 computes them: after bbolt's consistency check, a CRC-32C (Castagnoli) runs
over every top-level bucket in name order, writing the bucket's name and then each item's key
and value (a nested bucket's value counts as empty). Every item of every bucket is a "key";
the revision is the main revision of the last key in the `key` bucket; the size is bbolt's
tx.Size(), the high-water mark in pages times the page size (not the file size, which may carry
a sha256 trailer).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import crc32c

from petcd.bbolt.page import BoltFormatError
from petcd.bbolt.reader import BoltReader


@dataclass(frozen=True, slots=True)
class DBStatus:
    hash: int
    revision: int
    total_key: int
    total_size: int


def db_status(path: str | os.PathLike[str]) -> DBStatus:
    """The status of a bbolt database file; BoltFormatError if it fails bbolt's check or its
    pages cannot be decoded (where bbolt itself would panic)."""
    try:
        return _status(path)
    except (struct.error, IndexError, ValueError, RecursionError) as e:
        raise BoltFormatError(f"invalid database: {e}") from None


def _status(path: str | os.PathLike[str]) -> DBStatus:
    with BoltReader(path) as db:
        problems = db.check()
        if problems:
            raise BoltFormatError(
                f"snapshot file integrity check failed. {len(problems)} errors found.\n" + "\n".join(problems)
            )
        h = 0
        revision = 0
        total = 0
        for name in db.buckets():
            h = crc32c.crc32c(name, h)
            is_key = name == b"key"
            last = b""
            crc = crc32c.crc32c
            k: memoryview | None = None
            for is_bucket, k, v in db.views(name):
                h = crc(k, h)
                if not is_bucket:
                    h = crc(v, h)
                total += 1
            if k is not None:
                last = bytes(k[:8])
            del k
            if is_key and last:
                revision = int.from_bytes(last, "big", signed=True)
        return DBStatus(h, revision, total, db.size())
