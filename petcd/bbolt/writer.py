"""Writing a bbolt file from sorted buckets, in one pass and bounded memory.

How it works
------------
Pages are written in the order they are finished. Pages 0-2 are reserved (two meta pages and an
empty freelist page); every bucket's items go into leaf pages filled up to the page size (a single
item larger than a page gets a page with overflow pages), and each full leaf is written at the
next free page id at once. Only the first key and page id of each written leaf stay in memory, so
the branch pages above them are written when the bucket ends. A nested bucket's pages are written
when its item is reached, before the parent's leaf that refers to them. A bucket with no nested
buckets whose single leaf takes at most a quarter page is stored inline, as bbolt does. When the
root bucket is written, the meta pages (which need its page id and the page count) are written
over the reserved pages 0 and 1: the target file must be seekable.

The result is what a fresh bbolt database holding the same data would look like after a compacting
copy: no free pages, so bbolt's consistency check sees every page reachable exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from petcd.bbolt.page import (
    BRANCH_ELEMENT,
    BUCKET_HEADER,
    BUCKET_LEAF_FLAG,
    INLINE_RATIO,
    LEAF_ELEMENT,
    PAGE_HEADER,
    PAGE_SIZE,
    Meta,
    encode_branch,
    encode_freelist,
    encode_leaf,
)

# Transaction ids of the two meta pages (etcd's snapshots do the same: page 0 holds the current
# txid, page 1 the one before).
_TXID = 2
MAX_KEY_SIZE = 32768  # bbolt's MaxKeySize


@dataclass(frozen=True, slots=True)
class Bucket:
    """A nested bucket as an item's value: its items in strictly increasing key order."""

    items: Iterable[tuple[bytes, BucketValue]]
    sequence: int = 0


BucketValue = bytes | Bucket


class BoltWriter:
    """Writes one bbolt database to a seekable binary file, from its current position on."""

    def __init__(self, f: BinaryIO, page_size: int = PAGE_SIZE) -> None:
        self._f = f
        self._base = f.tell()
        self._ps = page_size
        self._next = 3
        self._done = False
        f.write(bytes(2 * page_size))  # meta pages, written last
        f.write(encode_freelist(2, [], page_size))

    def _put(self, page: bytes) -> int:
        pgid = self._next
        # the page's own id sits in its first 8 bytes; encoders write a placeholder 0
        self._f.write(pgid.to_bytes(8, "little") + page[8:])
        self._next += len(page) // self._ps
        return pgid

    def _leaf(self, items: list[tuple[int, bytes, bytes]]) -> int:
        return self._put(encode_leaf(0, items, self._ps))

    def _tree(
        self, items: Iterable[tuple[bytes, BucketValue]], sequence: int, may_inline: bool
    ) -> bytes | int:
        """Write a bucket's pages; its bucket value (inline) or root page id."""
        ps = self._ps
        cur: list[tuple[int, bytes, bytes]] = []
        cur_size = PAGE_HEADER.size
        leaves: list[tuple[bytes, int]] = []
        nested = False
        last: bytes | None = None
        for key, value in items:
            if not key:
                raise ValueError("bbolt: empty key")
            if len(key) > MAX_KEY_SIZE:
                raise ValueError(f"bbolt: key of {len(key)} bytes is over bbolt's limit of {MAX_KEY_SIZE}")
            if last is not None and key <= last:
                raise ValueError(f"bbolt: keys out of order ({last!r} then {key!r})")
            last = key
            flags = 0
            if isinstance(value, Bucket):
                value = self.bucket_value(value)
                flags = BUCKET_LEAF_FLAG
                nested = True
            size = LEAF_ELEMENT.size + len(key) + len(value)
            if cur and cur_size + size > ps:
                leaves.append((cur[0][1], self._leaf(cur)))
                cur = []
                cur_size = PAGE_HEADER.size
            cur.append((flags, key, value))
            cur_size += size
        if may_inline and not leaves and not nested and cur_size <= ps // INLINE_RATIO:
            return BUCKET_HEADER.pack(0, sequence) + encode_leaf(0, cur, None)
        if cur or not leaves:
            leaves.append((cur[0][1] if cur else b"", self._leaf(cur)))
        level = leaves
        while len(level) > 1:
            level = [(group[0][0], self._put(encode_branch(0, group, ps))) for group in self._groups(level)]
        return level[0][1]

    def _groups(self, level: list[tuple[bytes, int]]) -> list[list[tuple[bytes, int]]]:
        """Branch pages for one level: filled to the page size, at least two children each."""
        groups: list[list[tuple[bytes, int]]] = []
        cur: list[tuple[bytes, int]] = []
        size = PAGE_HEADER.size
        for key, pgid in level:
            need = BRANCH_ELEMENT.size + len(key)
            if len(cur) >= 2 and size + need > self._ps:
                groups.append(cur)
                cur = []
                size = PAGE_HEADER.size
            cur.append((key, pgid))
            size += need
        if len(cur) == 1 and groups:
            groups[-1].append(cur[0])  # the previous page takes it (overflowing if it must)
        else:
            groups.append(cur)
        return groups

    def bucket_value(self, bucket: Bucket) -> bytes:
        """Write a bucket's pages; the value its parent stores for it."""
        tree = self._tree(bucket.items, bucket.sequence, may_inline=True)
        if isinstance(tree, bytes):
            return tree
        return BUCKET_HEADER.pack(tree, bucket.sequence)

    def finish(self, buckets: Iterable[tuple[bytes, Bucket]]) -> int:
        """Write the top-level buckets (strictly increasing names) and the meta pages; returns the
        database size in bytes (bbolt's tx.Size)."""
        if self._done:
            raise ValueError("bbolt: writer already finished")
        self._done = True
        root = self._tree(((name, b) for name, b in buckets), 0, may_inline=False)
        assert isinstance(root, int)
        end = self._f.tell()
        for page_id, txid in ((0, _TXID), (1, _TXID - 1)):
            meta = Meta(self._ps, 0, root, 0, 2, self._next, txid)
            self._f.seek(self._base + page_id * self._ps)
            self._f.write(meta.page(page_id))
        self._f.seek(end)
        size = self._next * self._ps
        assert end - self._base == size
        return size


def write_bolt(
    f: BinaryIO, buckets: Iterable[tuple[bytes, Bucket]], page_size: int = PAGE_SIZE
) -> int:
    """Write a whole bbolt database of these top-level buckets to f (seekable); its size."""
    return BoltWriter(f, page_size).finish(buckets)


__all__ = ["BoltWriter", "Bucket", "BucketValue", "write_bolt"]
