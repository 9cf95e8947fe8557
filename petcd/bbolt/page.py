"""The bbolt file format (go.etcd.io/bbolt 1.3, the one etcd 3.5 uses): pages and their parts.

A bbolt file is an array of fixed-size pages (4096 bytes here). Every page opens with a
16-byte header, little-endian like everything else in the file:

    u64 id        the page's own number (its offset / page size)
    u16 flags     0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist
    u16 count     elements on the page
    u32 overflow  pages after this one that belong to it (a large node spans several)

Pages 0 and 1 are meta pages; the valid one with the higher transaction id is current. A meta
holds magic 0xED0CDAED, version 2, the page size, flags, the root bucket (root page id and
sequence), the freelist page id, the high-water mark (pages in use, so the database size is
pgid * page size), the transaction id, and an FNV-1a 64-bit checksum of the fields before it.

A freelist page lists free page ids as u64s; a count of 0xFFFF means the real count is the
first u64. A branch page holds `count` elements (u32 pos, u32 ksize, u64 child page id); a leaf
page `count` elements (u32 flags, u32 pos, u32 ksize, u32 vsize). `pos` is the distance from
the element itself to its key; a leaf's value follows the key. Elements come first, then the
keys and values, in element order.

A bucket is a B+tree; the root bucket's leaves hold the top-level buckets as elements with leaf
flag 0x01, whose value is a 16-byte bucket header (u64 root page id, u64 sequence). A bucket
whose root id is 0 is *inline*: its single leaf page (header and elements) follows the bucket
header inside the value itself. bbolt inlines a bucket with no sub-buckets whose leaf is at most
a quarter of a page.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10

BUCKET_LEAF_FLAG = 0x01
NO_FREELIST = 0xFFFFFFFFFFFFFFFF

PAGE_HEADER = struct.Struct("<QHHI")
LEAF_ELEMENT = struct.Struct("<IIII")
BRANCH_ELEMENT = struct.Struct("<IIQ")
BUCKET_HEADER = struct.Struct("<QQ")
# magic, version, page size, flags, root (root pgid, sequence), freelist, pgid, txid
_META_FIELDS = struct.Struct("<IIIIQQQQQ")
_CHECKSUM = struct.Struct("<Q")
META_SIZE = _META_FIELDS.size + _CHECKSUM.size

INLINE_RATIO = 4  # a bucket inlines when its leaf takes at most page size / 4


class BoltFormatError(Exception):
    """The bytes are not a valid bbolt database; the texts are bbolt's where it has one."""


def fnv64a(data: bytes | bytearray | memoryview) -> int:
    h = 0xCBF29CE484222325
    for b in bytes(data):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass(frozen=True, slots=True)
class Meta:
    page_size: int
    flags: int
    root: int
    sequence: int
    freelist: int
    pgid: int
    txid: int

    def encode(self) -> bytes:
        fields = _META_FIELDS.pack(
            MAGIC, VERSION, self.page_size, self.flags, self.root, self.sequence,
            self.freelist, self.pgid, self.txid,
        )
        return fields + _CHECKSUM.pack(fnv64a(fields))

    def page(self, page_id: int) -> bytes:
        """The whole meta page with this id (0 or 1)."""
        body = PAGE_HEADER.pack(page_id, META_PAGE, 0, 0) + self.encode()
        return body + bytes(self.page_size - len(body))

    @classmethod
    def decode(cls, buf: bytes | memoryview) -> Meta:
        """The meta in a page's data (after the page header); BoltFormatError if invalid."""
        if len(buf) < META_SIZE:
            raise BoltFormatError("invalid database")
        magic, version, psize, flags, root, seq, freelist, pgid, txid = _META_FIELDS.unpack_from(buf)
        (checksum,) = _CHECKSUM.unpack_from(buf, _META_FIELDS.size)
        if magic != MAGIC:
            raise BoltFormatError("invalid database")
        if version != VERSION:
            raise BoltFormatError("version mismatch")
        # bbolt accepts a zero checksum (files written before checksums existed)
        if checksum != 0 and checksum != fnv64a(buf[: _META_FIELDS.size]):
            raise BoltFormatError("checksum error")
        return cls(psize, flags, root, seq, freelist, pgid, txid)


def node_size(elem_size: int, items: list[tuple[bytes, bytes]]) -> int:
    """Bytes a page needs for these elements (header, elements, keys and values)."""
    return PAGE_HEADER.size + sum(elem_size + len(k) + len(v) for k, v in items)


def encode_leaf(page_id: int, items: list[tuple[int, bytes, bytes]], page_size: int | None) -> bytes:
    """A leaf page of (flags, key, value) elements. page_size=None: unpadded (an inline bucket's
    page); otherwise padded to whole pages, with overflow set."""
    n = len(items)
    elems = bytearray()
    data = bytearray()
    data_start = PAGE_HEADER.size + n * LEAF_ELEMENT.size
    for i, (flags, key, value) in enumerate(items):
        elem_off = PAGE_HEADER.size + i * LEAF_ELEMENT.size
        pos = data_start + len(data) - elem_off
        elems += LEAF_ELEMENT.pack(flags, pos, len(key), len(value))
        data += key
        data += value
    return _finish(page_id, LEAF_PAGE, n, bytes(elems) + bytes(data), page_size)


def encode_branch(page_id: int, items: list[tuple[bytes, int]], page_size: int) -> bytes:
    """A branch page of (first key, child page id) elements, padded to whole pages."""
    n = len(items)
    elems = bytearray()
    data = bytearray()
    data_start = PAGE_HEADER.size + n * BRANCH_ELEMENT.size
    for i, (key, child) in enumerate(items):
        elem_off = PAGE_HEADER.size + i * BRANCH_ELEMENT.size
        pos = data_start + len(data) - elem_off
        elems += BRANCH_ELEMENT.pack(pos, len(key), child)
        data += key
    return _finish(page_id, BRANCH_PAGE, n, bytes(elems) + bytes(data), page_size)


def encode_freelist(page_id: int, free: list[int], page_size: int) -> bytes:
    ids = sorted(free)
    if len(ids) < 0xFFFF:
        count, body = len(ids), struct.pack(f"<{len(ids)}Q", *ids)
    else:
        count, body = 0xFFFF, struct.pack(f"<{len(ids) + 1}Q", len(ids), *ids)
    return _finish(page_id, FREELIST_PAGE, count, body, page_size)


def pages_for(size: int, page_size: int) -> int:
    return max(1, -(-size // page_size))


def _finish(page_id: int, flags: int, count: int, body: bytes, page_size: int | None) -> bytes:
    size = PAGE_HEADER.size + len(body)
    if page_size is None:
        return PAGE_HEADER.pack(page_id, flags, count, 0) + body
    npages = pages_for(size, page_size)
    header = PAGE_HEADER.pack(page_id, flags, count, npages - 1)
    return header + body + bytes(npages * page_size - size)
