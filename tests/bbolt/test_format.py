"""The bbolt writer and reader against each other and against the format's rules (no servers)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petcd.bbolt import BoltFormatError, BoltReader, Bucket, db_status, write_bolt
from petcd.bbolt.page import BUCKET_HEADER, PAGE_HEADER, PAGE_SIZE, fnv64a

Tree = dict[bytes, "bytes | Tree"]


def _bucket(tree: Tree) -> Bucket:
    return Bucket([(k, _bucket(v) if isinstance(v, dict) else v) for k, v in sorted(tree.items())])


def _write(path: Path, buckets: dict[bytes, Tree]) -> int:
    with open(path, "wb") as f:
        return write_bolt(f, [(name, _bucket(t)) for name, t in sorted(buckets.items())])


def _read(db: BoltReader, *path: bytes) -> Tree:
    out: Tree = {}
    for it in db.items(*path):
        out[it.key] = _read(db, *path, it.key) if it.is_bucket else it.value
    return out


keys = st.binary(min_size=1, max_size=40)
# mostly small values (many per page), some over a page (overflow pages); large items come from
# the repetition strategy below, which costs hypothesis little entropy
values = st.one_of(
    st.binary(max_size=48),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=4), st.integers(100, 3000)),
)
leaf_buckets = st.dictionaries(keys, values, max_size=40)
trees = st.dictionaries(keys, st.one_of(values, leaf_buckets), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.dictionaries(st.binary(min_size=1, max_size=12), trees, max_size=6))
def test_round_trip_and_check(tmp_path_factory: pytest.TempPathFactory, buckets: dict[bytes, Tree]) -> None:
    path = tmp_path_factory.mktemp("rt") / "db"
    size = _write(path, buckets)
    assert path.stat().st_size == size
    with BoltReader(path) as db:
        assert db.check() == []
        assert db.buckets() == sorted(buckets)
        for name, tree in buckets.items():
            assert _read(db, name) == tree
    ds = db_status(path)
    assert ds.total_size == size
    assert ds.total_key == sum(len(t) for t in buckets.values())


def test_many_items_make_a_multi_level_tree(tmp_path: Path) -> None:
    items = {f"{i:08d}".encode() * 4: bytes([i % 251]) * (i % 50) for i in range(30000)}
    _write(tmp_path / "db", {b"key": dict(items)})
    with BoltReader(tmp_path / "db") as db:
        assert db.check() == []
        root_value = next(it.value for it in db.items() if it.key == b"key")
        root, _ = BUCKET_HEADER.unpack_from(root_value)
        _, flags, _, _ = PAGE_HEADER.unpack_from(db._buf, root * PAGE_SIZE)
        assert flags == 0x01  # the bucket's root is a branch page
        assert list(db.pairs(b"key")) == sorted(items.items())


def test_small_buckets_are_inline_as_bbolt_makes_them(tmp_path: Path) -> None:
    small: Tree = {b"a": b"1", b"b": b"2"}
    # 16-byte page header + elements: 1024 bytes fit inline, one more does not
    exact: Tree = {b"k": b"x" * (1024 - 16 - 16 - 1)}
    over: Tree = {b"k": b"x" * (1024 - 16 - 16)}
    _write(tmp_path / "db", {b"empty": {}, b"small": small, b"exact": exact, b"over": over,
                             b"nested": {b"child": {b"c": b"d"}}})
    with BoltReader(tmp_path / "db") as db:
        roots = {it.key: BUCKET_HEADER.unpack_from(it.value)[0] for it in db.items()}
        assert roots[b"empty"] == 0 and roots[b"small"] == 0 and roots[b"exact"] == 0
        assert roots[b"over"] != 0
        assert roots[b"nested"] != 0  # a bucket holding a bucket is never inline
        assert list(db.pairs(b"nested", b"child")) == [(b"c", b"d")]
        assert db.check() == []


def test_writer_refuses_unsorted_or_empty_keys() -> None:
    with pytest.raises(ValueError, match="out of order"):
        write_bolt(io.BytesIO(), [(b"b", Bucket([(b"2", b""), (b"1", b"")]))])
    with pytest.raises(ValueError, match="out of order"):
        write_bolt(io.BytesIO(), [(b"b", Bucket([])), (b"a", Bucket([]))])
    with pytest.raises(ValueError, match="empty key"):
        write_bolt(io.BytesIO(), [(b"b", Bucket([(b"", b"v")]))])


def test_meta_pages(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write(path, {b"b": {b"k": b"v"}})
    raw = bytearray(path.read_bytes())
    with BoltReader(path) as db:
        assert db.meta.txid == 2 and db.meta.freelist == 2 and db.meta.page_size == PAGE_SIZE
    meta = raw[PAGE_HEADER.size : PAGE_HEADER.size + 64]
    (checksum,) = struct.unpack_from("<Q", meta, 56)
    assert checksum == fnv64a(meta[:56])

    # page 0's meta damaged: bbolt falls back to page 1 (txid 1)
    bad0 = bytearray(raw)
    bad0[PAGE_HEADER.size + 40] ^= 0xFF
    path.write_bytes(bad0)
    with BoltReader(path) as db:
        assert db.meta.txid == 1
        assert list(db.pairs(b"b")) == [(b"k", b"v")]
    # both damaged
    bad0[PAGE_SIZE + PAGE_HEADER.size + 40] ^= 0xFF
    path.write_bytes(bad0)
    with pytest.raises(BoltFormatError, match="checksum error"):
        BoltReader(path)
    bad_magic = bytearray(raw)
    bad_magic[PAGE_HEADER.size] ^= 0xFF
    bad_magic[PAGE_SIZE + PAGE_HEADER.size] ^= 0xFF
    path.write_bytes(bad_magic)
    with pytest.raises(BoltFormatError, match="invalid database"):
        BoltReader(path)
    path.write_bytes(bytes(5000))
    with pytest.raises(BoltFormatError, match="file size too small"):
        BoltReader(path)


def test_check_finds_unreachable_pages(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write(path, {b"b": {b"k": b"v" * 3000}})
    raw = path.read_bytes()
    # one more page past the tree, counted by the meta but neither reachable nor free
    with open(path, "wb") as f:
        f.write(raw + bytes(PAGE_SIZE))
    with BoltReader(path) as db:
        pgid = db.meta.pgid
    # raise the high-water mark in both metas (and fix their checksums)
    data = bytearray(path.read_bytes())
    for base in (0, PAGE_SIZE):
        off = base + PAGE_HEADER.size
        struct.pack_into("<Q", data, off + 40, pgid + 1)
        struct.pack_into("<Q", data, off + 56, fnv64a(data[off : off + 56]))
    path.write_bytes(data)
    with BoltReader(path) as db:
        assert db.check() == [f"page {pgid}: unreachable unfreed"]
    with pytest.raises(BoltFormatError, match=r"integrity check failed\. 1 errors found"):
        db_status(path)


def test_an_lmdb_file_is_named_as_such(tmp_path: Path) -> None:
    from petcd.backend import KEY, Backend

    with Backend(str(tmp_path / "lmdb")) as be:
        be.put(KEY, b"k", b"v")
    with pytest.raises(BoltFormatError, match=r"invalid database \(an LMDB file"):
        BoltReader(tmp_path / "lmdb")


def test_damaged_pages_are_format_errors(tmp_path: Path) -> None:
    """Random damage past the meta pages: db_status answers or raises BoltFormatError, never
    anything else (bbolt itself panics on some of these)."""
    import random

    path = tmp_path / "db"
    _write(path, {b"key": {f"{i:06d}".encode(): b"v" * (i % 300) for i in range(2000)},
                  b"meta": {b"a": b"b"}})
    clean = path.read_bytes()
    rng = random.Random(7)
    outcomes = set()
    for _ in range(150):
        data = bytearray(clean)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(3 * PAGE_SIZE, len(data))] = rng.randrange(256)
        path.write_bytes(data)
        try:
            db_status(path)
            outcomes.add("ok")
        except BoltFormatError:
            outcomes.add("error")
    assert "error" in outcomes
