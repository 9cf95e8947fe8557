"""KeyIndex and TreeIndex: the worked examples of key_index.py and edge cases."""

from __future__ import annotations

import pytest

from petcd.mvcc import KeyIndex, RevisionNotFoundError, TreeIndex
from petcd.mvcc.revision import (
    bound,
    bytes_to_rev,
    is_tombstone,
    main_of,
    pack,
    rev_to_bytes,
    sub_of,
)


def example() -> KeyIndex:
    ki = KeyIndex(b"k")
    ki.put(pack(2))
    ki.put(pack(4))
    ki.tombstone(pack(6))
    ki.put(pack(8))
    ki.put(pack(9))
    return ki


def revs(ki: KeyIndex) -> list[list[int]]:
    return [[main_of(r) for r in g.revs] for g in ki.generations]


def test_revision_encoding() -> None:
    r = pack(0x0102030405060708, 7)
    b = rev_to_bytes(r)
    assert b == bytes.fromhex("0102030405060708") + b"_" + bytes.fromhex("0000000000000007")
    assert len(b) == 17 and not is_tombstone(b)
    t = rev_to_bytes(r, tombstone=True)
    assert t == b + b"t" and is_tombstone(t)
    assert bytes_to_rev(b) == bytes_to_rev(t) == r
    assert main_of(r) == 0x0102030405060708 and sub_of(r) == 7
    assert rev_to_bytes(pack(1, 5)) < rev_to_bytes(pack(1, 5), True) < rev_to_bytes(pack(1, 6))
    assert rev_to_bytes(pack(1, 1 << 31)) < rev_to_bytes(pack(2, 0))
    assert pack(3, 0xFFFFFFFF) < bound(3) <= pack(4, 0)


def test_generations_of_the_worked_example() -> None:
    ki = example()
    assert revs(ki) == [[2, 4, 6], [8, 9]]
    assert [g.ver for g in ki.generations] == [3, 2]
    assert ki.modified == pack(9)


@pytest.mark.parametrize(
    ("at", "want"),
    [
        (1, None),
        (2, (2, 2, 1)),
        (3, (2, 2, 1)),
        (5, (4, 2, 2)),
        (6, None),
        (7, None),
        (8, (8, 8, 1)),
        (9, (9, 8, 2)),
        (100, (9, 8, 2)),
    ],
)
def test_get(at: int, want: tuple[int, int, int] | None) -> None:
    got = example().get(at)
    assert (None if got is None else (main_of(got[0]), main_of(got[1]), got[2])) == want


def test_get_with_sub_revisions() -> None:
    ki = KeyIndex(b"k")
    ki.put(pack(5, 0))
    ki.put(pack(5, 3))
    ki.tombstone(pack(7, 1))
    assert ki.get(5) == (pack(5, 3), pack(5, 0), 2)
    assert ki.get(6) == (pack(5, 3), pack(5, 0), 2)
    assert ki.get(7) is None


def test_put_must_move_forward() -> None:
    ki = example()
    with pytest.raises(ValueError):
        ki.put(pack(9))
    with pytest.raises(ValueError):
        ki.put(pack(3))


def test_tombstone_needs_a_live_key() -> None:
    ki = KeyIndex(b"k")
    with pytest.raises(RevisionNotFoundError):
        ki.tombstone(pack(1))
    ki.put(pack(1))
    ki.tombstone(pack(2))
    with pytest.raises(RevisionNotFoundError):
        ki.tombstone(pack(3))


def test_compaction_steps_of_the_worked_example() -> None:
    ki = example()
    keep: set[int] = set()
    ki.compact(5, keep)
    assert revs(ki) == [[4, 6], [8, 9]] and keep == {pack(4)}
    assert ki.get(5) == (pack(4), pack(2), 2)  # the version survives compaction
    keep = set()
    ki.compact(7, keep)
    assert revs(ki) == [[8, 9]] and keep == set()
    keep = set()
    ki.compact(9, keep)
    assert revs(ki) == [[9]] and keep == {pack(9)}
    assert ki.get(9) == (pack(9), pack(8), 2)


@pytest.mark.parametrize(
    ("at", "gens", "kept"),
    [
        (1, [[2, 4, 6], [8, 9]], set()),
        (2, [[2, 4, 6], [8, 9]], {2}),
        (4, [[4, 6], [8, 9]], {4}),
        (6, [[8, 9]], set()),  # a tombstone at the compaction revision goes with its generation
        (8, [[8, 9]], {8}),
        (12, [[9]], {9}),
    ],
)
def test_compact_at(at: int, gens: list[list[int]], kept: set[int]) -> None:
    ki = example()
    before = ki.get(at)
    keep: set[int] = set()
    ki.keep(at, keep)
    assert {main_of(r) for r in keep} == kept
    keep2: set[int] = set()
    ki.compact(at, keep2)
    assert keep2 == keep
    assert revs(ki) == gens
    assert ki.get(at) == before  # reads at the compaction revision are unchanged


def test_compacting_a_deleted_key_leaves_it_empty() -> None:
    ki = KeyIndex(b"k")
    ki.put(pack(1))
    ki.tombstone(pack(2))
    keep: set[int] = set()
    ki.compact(1, keep)
    assert not ki.is_empty() and keep == {pack(1)}
    ki.compact(2, keep)
    assert ki.is_empty()
    ki.put(pack(3))
    assert ki.get(3) == (pack(3), pack(3), 1)


def test_restore_takes_create_revision_and_version_from_the_record() -> None:
    ki = KeyIndex(b"k")
    ki.restore(pack(7, 2), create_main=3, version=4)
    ki.put(pack(9))
    assert ki.get(7) == (pack(7, 2), pack(3), 4)
    assert ki.get(9) == (pack(9), pack(3), 5)
    ki.tombstone(pack(10))
    ki.restore(pack(11), create_main=11, version=1)
    assert ki.get(11) == (pack(11), pack(11), 1)


def tree() -> TreeIndex:
    t = TreeIndex()
    for i, k in enumerate([b"a", b"b", b"ba", b"c", b"d"], start=1):
        t.put(k, pack(i))
    t.tombstone(b"c", pack(6))
    t.put(b"a", pack(7))
    return t


@pytest.mark.parametrize(
    ("key", "end", "at", "want"),
    [
        (b"a", b"", 7, [(b"a", 7)]),
        (b"c", b"", 7, []),
        (b"c", b"", 5, [(b"c", 4)]),
        (b"b", b"c", 7, [(b"b", 2), (b"ba", 3)]),
        (b"b", b"\x00", 7, [(b"b", 2), (b"ba", 3), (b"d", 5)]),
        (b"\x00", b"\x00", 7, [(b"a", 7), (b"b", 2), (b"ba", 3), (b"d", 5)]),
        (b"a", b"\x00", 3, [(b"a", 1), (b"b", 2), (b"ba", 3)]),
        (b"d", b"b", 7, []),
        (b"zz", b"\x00", 7, []),
    ],
)
def test_tree_ranges(key: bytes, end: bytes, at: int, want: list[tuple[bytes, int]]) -> None:
    t = tree()
    got = [(k, main_of(r)) for k, r in t.live(key, end, at)]
    assert got == want
    revisions, total = t.revisions(key, end, at, limit=2)
    assert total == len(want) == t.count(key, end, at)
    assert [main_of(r) for r in revisions] == [m for _, m in want][:2]


def test_tree_compaction_forgets_dead_keys() -> None:
    t = tree()
    assert len(t) == 5
    keep = t.compact(6)
    assert len(t) == 4
    assert {main_of(r) for r in keep} == {1, 2, 3, 5}
    assert t.key_index(b"c") is None
    assert t.live(b"c", b"", 7) == []
    t.put(b"c", pack(8))
    assert [k for k, _ in t.live(b"\x00", b"\x00", 8)] == [b"a", b"b", b"ba", b"c", b"d"]
    with pytest.raises(RevisionNotFoundError):
        t.tombstone(b"zz", pack(9))
