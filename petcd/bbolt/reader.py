"""Reading a bbolt file: the current meta, buckets (inline or not), their items in key order.

The file is memory-mapped read-only; bytes after the last page (the sha256 trailer of an etcd
snapshot) are ignored, as bbolt ignores them.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from petcd.bbolt.page import (
    BRANCH_ELEMENT,
    BRANCH_PAGE,
    BUCKET_HEADER,
    BUCKET_LEAF_FLAG,
    FREELIST_PAGE,
    LEAF_ELEMENT,
    LEAF_PAGE,
    NO_FREELIST,
    PAGE_HEADER,
    PAGE_SIZE,
    BoltFormatError,
    Meta,
)


@dataclass(frozen=True, slots=True)
class Item:
    """One element of a bucket: a key and its value, or a key naming a nested bucket."""

    key: bytes
    value: bytes
    is_bucket: bool


_LMDB_MAGIC = struct.pack("<I", 0xBEEFC0DE)  # an LMDB meta page's magic, after its 16-byte header


class _Region:
    """A page's bytes: in the file (page id) or inside an inline bucket's value."""

    __slots__ = ("buf", "off")

    def __init__(self, buf: memoryview, off: int) -> None:
        self.buf = buf
        self.off = off


class BoltReader:
    """A read-only view of a bbolt database file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 2 * PAGE_SIZE:
                raise BoltFormatError("file size too small")
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = memoryview(self._mmap)
        self.file_size = size
        self.meta = self._current_meta()
        self.page_size = self.meta.page_size

    def _current_meta(self) -> Meta:
        """bbolt's rule: the valid meta with the higher txid (page 0's size gives page 1's place)."""
        metas: list[Meta] = []
        errors: list[str] = []
        try:
            m0 = Meta.decode(self._buf[PAGE_HEADER.size :])
            metas.append(m0)
            psize = m0.page_size
        except BoltFormatError as e:
            errors.append(str(e))
            psize = PAGE_SIZE
        try:
            if len(self._buf) >= psize + PAGE_HEADER.size:
                metas.append(Meta.decode(self._buf[psize + PAGE_HEADER.size :]))
        except BoltFormatError as e:
            errors.append(str(e))
        if not metas:
            if self._buf[16:20] == _LMDB_MAGIC:
                raise BoltFormatError(
                    "invalid database (an LMDB file, such as petcd's own backend, not a bbolt one)"
                )
            raise BoltFormatError(errors[0] if errors else "invalid database")
        meta = max(metas, key=lambda m: m.txid)
        if meta.pgid * meta.page_size > len(self._buf):
            raise BoltFormatError(
                f"bbolt: file holds {len(self._buf)} bytes but its meta says {meta.pgid} pages"
            )
        return meta

    # -- pages ---------------------------------------------------------------------------------

    def _page(self, pgid: int) -> _Region:
        if pgid >= self.meta.pgid:
            raise BoltFormatError(f"bbolt: page {pgid} past the high-water mark {self.meta.pgid}")
        return _Region(self._buf, pgid * self.page_size)

    @staticmethod
    def _header(r: _Region) -> tuple[int, int, int, int]:
        page_id, flags, count, overflow = PAGE_HEADER.unpack_from(r.buf, r.off)
        return page_id, flags, count, overflow

    def freelist(self) -> list[int]:
        """The free page ids (empty when the file keeps no freelist)."""
        if self.meta.freelist == NO_FREELIST:
            return []
        r = self._page(self.meta.freelist)
        _, flags, count, _ = self._header(r)
        if not flags & FREELIST_PAGE:
            raise BoltFormatError(f"bbolt: page {self.meta.freelist} is not a freelist page")
        start = r.off + PAGE_HEADER.size
        if count == 0xFFFF:
            (count,) = struct.unpack_from("<Q", r.buf, start)
            start += 8
        return list(struct.unpack_from(f"<{count}Q", r.buf, start))

    def _walk(
        self, r: _Region, pages: list[tuple[int, int]] | None = None
    ) -> Iterator[tuple[int, memoryview, memoryview]]:
        """(flags, key, value) of the leaves under a page, in key order, as views into the file
        (valid until close). pages collects the (page id, overflow) of every page visited."""
        page_id, flags, count, overflow = self._header(r)
        if pages is not None and r.buf is self._buf:
            pages.append((page_id, overflow))
        base = r.off + PAGE_HEADER.size
        buf = r.buf
        if flags & LEAF_PAGE:
            esize = LEAF_ELEMENT.size
            elems = buf[base : base + count * esize]
            eoff = base
            for eflags, pos, ksize, vsize in LEAF_ELEMENT.iter_unpack(elems):
                k = eoff + pos
                v = k + ksize
                yield eflags, buf[k:v], buf[v : v + vsize]
                eoff += esize
        elif flags & BRANCH_PAGE:
            elems = buf[base : base + count * BRANCH_ELEMENT.size]
            for _, _, child in BRANCH_ELEMENT.iter_unpack(elems):
                yield from self._walk(self._page(child), pages)
        else:
            raise BoltFormatError(f"bbolt: page {page_id} has flags {flags:#x}, not a branch or leaf page")

    def _bucket_root(self, header_value: bytes) -> _Region:
        root, _seq = BUCKET_HEADER.unpack_from(header_value)
        if root == 0:  # inline: the leaf page follows the bucket header in the value
            return _Region(memoryview(header_value), BUCKET_HEADER.size)
        return self._page(root)

    def _items(self, r: _Region, pages: list[tuple[int, int]] | None = None) -> Iterator[Item]:
        for flags, k, v in self._walk(r, pages):
            yield Item(bytes(k), bytes(v), bool(flags & BUCKET_LEAF_FLAG))

    # -- buckets -------------------------------------------------------------------------------

    def buckets(self) -> list[bytes]:
        """Top-level bucket names, in bbolt's (byte) order."""
        return [it.key for it in self._items(self._page(self.meta.root)) if it.is_bucket]

    def _find(self, path: tuple[bytes, ...]) -> _Region:
        r = self._page(self.meta.root)
        for name in path:
            for it in self._items(r):
                if it.key == name and it.is_bucket:
                    r = self._bucket_root(it.value)
                    break
            else:
                raise KeyError(b"/".join(path))
        return r

    def items(self, *path: bytes) -> Iterator[Item]:
        """The items of the bucket at path (a top-level name, then nested names), in key order."""
        return self._items(self._find(path))

    def pairs(self, *path: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of the bucket's plain items (nested buckets left out), in key order."""
        for flags, k, v in self._walk(self._find(path)):
            if not flags & BUCKET_LEAF_FLAG:
                yield bytes(k), bytes(v)

    def views(self, *path: bytes) -> Iterator[tuple[bool, memoryview, memoryview]]:
        """(is a nested bucket, key, value) of the bucket's items as views into the mapped file,
        without copying; the views are valid until close()."""
        for flags, k, v in self._walk(self._find(path)):
            yield bool(flags & BUCKET_LEAF_FLAG), k, v

    def size(self) -> int:
        """The database size as bbolt reports it (tx.Size): high-water mark x page size."""
        return self.meta.pgid * self.page_size

    def check(self) -> list[str]:
        """bbolt's consistency check (tx.Check): every page below the high-water mark is either
        free or reachable exactly once, and reachable pages are branch or leaf pages."""
        problems: list[str] = []
        free = self.freelist()
        freed: set[int] = set()
        for pid in free:
            if pid in freed:
                problems.append(f"page {pid}: already freed")
            freed.add(pid)
        reachable: set[int] = {0, 1}
        if self.meta.freelist != NO_FREELIST:
            _, _, _, overflow = self._header(self._page(self.meta.freelist))
            reachable.update(range(self.meta.freelist, self.meta.freelist + overflow + 1))

        def visit(r: _Region) -> None:
            pages: list[tuple[int, int]] = []
            nested: list[bytes] = []
            for flags, _k, v in self._walk(r, pages):
                if flags & BUCKET_LEAF_FLAG:
                    nested.append(bytes(v))
            for pid, overflow in pages:
                if pid > self.meta.pgid:
                    problems.append(f"page {pid}: out of bounds: {self.meta.pgid}")
                for p in range(pid, pid + overflow + 1):
                    if p in reachable:
                        problems.append(f"page {p}: multiple references")
                    reachable.add(p)
                if pid in freed:
                    problems.append(f"page {pid}: reachable freed")
            for value in nested:
                root, _ = BUCKET_HEADER.unpack_from(value)
                if root != 0:
                    visit(self._page(root))

        visit(self._page(self.meta.root))
        if self.meta.freelist != NO_FREELIST:
            # without a stored freelist bbolt counts every unreachable page as free
            for p in range(self.meta.pgid):
                if p not in reachable and p not in freed:
                    problems.append(f"page {p}: unreachable unfreed")
        return problems

    def close(self) -> None:
        try:
            self._buf.release()
            self._mmap.close()
        except BufferError:
            # views from views() still alive: the map goes when the last of them does
            pass

    def __enter__(self) -> BoltReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
