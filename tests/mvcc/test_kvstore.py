"""KVStore: etcd's revision, range, delete, compaction, hash and restart semantics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from petcd.backend import KEY, META, Backend
from petcd.mvcc import CompactedError, FutureRevError, KVStore, MVCCError, RangeOptions
from petcd.mvcc.kvstore import FINISHED_COMPACT_KEY, SCHEDULED_COMPACT_KEY
from petcd.mvcc.revision import pack, rev_to_bytes
from petcd.proto.mvccpb import kv_pb2 as mvccpb


def open_store(path: Path, **kw: int) -> KVStore:
    return KVStore(Backend(str(path / "member" / "snap" / "db")), **kw)


def put(s: KVStore, key: bytes, value: bytes, lease: int = 0) -> mvccpb.KeyValue:
    with s.write() as t:
        return t.put(key, value, lease)


def delete(s: KVStore, key: bytes, end: bytes = b"") -> list[mvccpb.KeyValue]:
    with s.write() as t:
        return t.delete_range(key, end)


def kv_tuple(kv: mvccpb.KeyValue) -> tuple[bytes, bytes, int, int, int, int]:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def test_revisions_versions_and_generations(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    assert s.rev == 1  # as etcd: the first change gets revision 2
    assert kv_tuple(put(s, b"k", b"v1")) == (b"k", b"v1", 2, 2, 1, 0)
    assert kv_tuple(put(s, b"k", b"v2", lease=9)) == (b"k", b"v2", 2, 3, 2, 9)
    assert [kv_tuple(kv) for kv in delete(s, b"k")] == [(b"k", b"v2", 2, 3, 2, 9)]
    assert s.rev == 4
    assert kv_tuple(put(s, b"k", b"v3")) == (b"k", b"v3", 5, 5, 1, 0)
    assert [kv_tuple(kv) for kv in s.range(b"k", b"", RangeOptions(rev=3)).kvs] == [(b"k", b"v2", 2, 3, 2, 9)]
    assert s.range(b"k", b"", RangeOptions(rev=4)).kvs == []


def test_one_revision_per_txn_and_its_changes(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    put(s, b"gone", b"x")
    with s.write() as t:
        assert t.rev == 2
        t.put(b"a", b"1")
        assert t.rev == 3
        t.put(b"b", b"2")
        t.put(b"a", b"3")  # same key twice in one txn: the version still counts both
        assert [kv_tuple(kv) for kv in t.range(b"a", b"c").kvs] == [
            (b"a", b"3", 3, 3, 2, 0),
            (b"b", b"2", 3, 3, 1, 0),
        ]
        assert len(t.delete_range(b"gone")) == 1
    assert s.rev == 3
    evs = t.changes
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in evs] == [
        (mvccpb.Event.PUT, b"a", 3),
        (mvccpb.Event.PUT, b"b", 3),
        (mvccpb.Event.PUT, b"a", 3),
        (mvccpb.Event.DELETE, b"gone", 3),
    ]
    assert evs[3].kv == mvccpb.KeyValue(key=b"gone", mod_revision=3)
    # The sub revisions number the changes; tombstones carry the "t" mark.
    keys = [k for k, _ in s.backend.range(KEY, rev_to_bytes(pack(3)))]
    assert keys == [rev_to_bytes(pack(3, i)) for i in range(3)] + [rev_to_bytes(pack(3, 3), tombstone=True)]
    with s.write() as t:
        assert t.delete_range(b"nothing") == []
        assert t.range(b"a").kvs[0].value == b"3"
    assert s.rev == 3 and t.changes == []


def test_one_write_txn_at_a_time(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    with s.write():
        with pytest.raises(MVCCError):
            s.write()
    with s.write() as t:
        t.put(b"a", b"1")


def test_range_options_and_errors(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    for k in (b"a", b"b", b"c", b"d"):
        put(s, k, k)
    r = s.range(b"a", b"\x00", RangeOptions(limit=2))
    assert [kv.key for kv in r.kvs] == [b"a", b"b"] and r.count == 4 and r.rev == 5
    r = s.range(b"b", b"d", RangeOptions(count_only=True))
    assert r.kvs == [] and r.count == 2
    r = s.range(b"\x00", b"\x00", RangeOptions(rev=3))
    assert [kv.key for kv in r.kvs] == [b"a", b"b"] and r.rev == 5
    assert s.range(b"c", b"a").count == 0
    with pytest.raises(FutureRevError, match=r"^mvcc: required revision is a future revision$"):
        s.range(b"a", b"", RangeOptions(rev=6))
    s.compact(3)
    with pytest.raises(CompactedError, match=r"^mvcc: required revision has been compacted$"):
        s.range(b"a", b"", RangeOptions(rev=2))
    assert [kv.key for kv in s.range(b"\x00", b"\x00", RangeOptions(rev=3)).kvs] == [b"a", b"b"]


def test_compact_errors(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    put(s, b"a", b"1")
    with pytest.raises(FutureRevError):
        s.compact(3)
    s.compact(2)
    with pytest.raises(CompactedError):
        s.compact(2)
    with pytest.raises(CompactedError):
        s.compact(1)
    assert s.compact_rev == 2


def _records(s: KVStore) -> list[bytes]:
    return [k for k, _ in s.backend.range(KEY)]


def test_compaction_removes_superseded_records_in_batches(tmp_path: Path) -> None:
    s = open_store(tmp_path, compaction_batch=10)
    for i in range(30):
        put(s, b"k%d" % (i % 3), b"%d" % i)  # revisions 2..31
    delete(s, b"k2")  # revision 32
    put(s, b"other", b"x")  # revision 33
    s.compact(32)
    assert s.backend.get(META, SCHEDULED_COMPACT_KEY) == rev_to_bytes(pack(32))
    assert s.compaction_pending
    steps = 0
    while s.compact_step():
        steps += 1
        put(s, b"during", b"%d" % steps)  # writes go on between batches
    assert steps == 3
    assert s.backend.get(META, FINISHED_COMPACT_KEY) == rev_to_bytes(pack(32))
    # Kept: the latest put of k0 (rev 29) and k1 (rev 30); k2 ended at 32 and is gone.
    kept = [k for k in _records(s) if k < rev_to_bytes(pack(33))]
    assert kept == [rev_to_bytes(pack(29)), rev_to_bytes(pack(30))]
    r = s.range(b"\x00", b"\x00", RangeOptions(rev=32))
    assert [(kv.key, kv.value, kv.version) for kv in r.kvs] == [(b"k0", b"27", 10), (b"k1", b"28", 10)]
    assert put(s, b"k0", b"new").version == 11


def test_hash_kv_ignores_compaction_progress(tmp_path: Path) -> None:
    stores = [open_store(tmp_path / name, compaction_batch=2) for name in ("a", "b", "c")]
    for s in stores:
        for i in range(20):
            put(s, b"k%d" % (i % 4), b"%d" % i)
        delete(s, b"k1")
        put(s, b"k9", b"z")
    base = stores[0].hash_kv()
    assert base[1:] == (23, -1)  # -1: never compacted, as etcd reports it
    for s in stores[1:]:
        assert s.hash_kv() == base
    stores[1].compact(15)
    stores[2].compact(15)
    stores[2].finish_compaction()
    stores[1].compact_step()
    assert stores[1].compaction_pending
    h1, h2 = stores[1].hash_kv(), stores[2].hash_kv()
    assert h1 == h2 and h1[1:] == (23, 15)
    assert stores[1].hash_kv(20) == stores[2].hash_kv(20) != stores[2].hash_kv(21)
    with pytest.raises(CompactedError):
        stores[2].hash_kv(15)  # etcd 3.4: the compaction revision itself is compacted
    with pytest.raises(FutureRevError):
        stores[2].hash_kv(24)
    put(stores[2], b"k0", b"changed")
    assert stores[2].hash_kv()[0] != stores[1].hash_kv()[0]


def test_hash_kv_matches_etcd(tmp_path: Path) -> None:
    """Hashes etcd 3.4.23 gave for the same operations (etcdctl endpoint hashkv)."""
    s = open_store(tmp_path)
    assert s.hash_kv() == (1084519789, 1, -1)  # CRC-32C of b"key" alone
    put(s, b"a", b"1")
    put(s, b"a", b"2")
    delete(s, b"a")
    assert s.hash_kv() == (1363947557, 4, -1)
    s.compact(4)
    s.finish_compaction()
    assert s.hash_kv() == (1084519789, 4, 4)
    put(s, b"b", b"1")
    s.compact(5)
    s.finish_compaction()
    assert s.hash_kv() == (800756125, 5, 5)


def test_events_replay_history(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    put(s, b"a", b"1")
    with s.write() as t:
        t.put(b"b", b"2")
        t.delete_range(b"a")
    put(s, b"c", b"3")
    evs = s.events(3)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in evs] == [
        (mvccpb.Event.PUT, b"b", 3),
        (mvccpb.Event.DELETE, b"a", 3),
        (mvccpb.Event.PUT, b"c", 4),
    ]
    assert [e.kv.key for e in s.events(2, 4)] == [b"a", b"b", b"a"]
    assert len(s.events(0, 0, limit=2)) == 2
    s.compact(3)
    with pytest.raises(CompactedError):
        s.events(2)


def test_listeners_get_each_changing_txn(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    seen: list[tuple[list[bytes], int]] = []
    s.add_listener(lambda evs, rev: seen.append(([e.kv.key for e in evs], rev)))
    put(s, b"a", b"1")
    with s.write() as t:
        t.delete_range(b"zz")
    delete(s, b"a")
    assert seen == [([b"a"], 2), ([b"a"], 3)]


def test_restart_restores_revisions_and_consistent_index(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    for i in range(10):
        with s.write() as t:
            t.put(b"k%d" % (i % 2), b"%d" % i)
            t.set_consistent_index(100 + i, term=3)
    delete(s, b"k0")
    s.compact(6)
    s.finish_compaction()
    h = s.hash_kv()
    s.backend.force_commit()
    s.backend.close()
    s2 = open_store(tmp_path)
    assert (s2.rev, s2.compact_rev, s2.consistent_index, s2.term) == (12, 6, 109, 3)
    assert s2.hash_kv() == h
    assert kv_tuple(put(s2, b"k1", b"again")) == (b"k1", b"again", 3, 13, 6, 0)
    assert kv_tuple(put(s2, b"k0", b"again")) == (b"k0", b"again", 14, 14, 1, 0)
    s2.backend.close()


def test_restart_finishes_an_interrupted_compaction(tmp_path: Path) -> None:
    s = open_store(tmp_path, compaction_batch=5)
    for i in range(40):
        put(s, b"k%d" % (i % 2), b"%d" % i)
    s.compact(30)
    s.compact_step()
    s.backend.force_commit()  # the scheduled revision and one batch of deletions are on disk
    records = len(_records(s))
    s.backend.close()
    s2 = open_store(tmp_path)
    assert s2.compact_rev == 30 and not s2.compaction_pending
    assert len(_records(s2)) < records
    assert s2.backend.get(META, FINISHED_COMPACT_KEY) == rev_to_bytes(pack(30))
    assert [kv.value for kv in s2.range(b"k0", b"k2", RangeOptions(rev=30)).kvs] == [b"28", b"27"]
    s2.backend.close()


def test_restart_after_everything_was_compacted_away(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    put(s, b"a", b"1")
    delete(s, b"a")
    s.compact(3)
    s.finish_compaction()
    assert _records(s) == []
    s.backend.force_commit()
    s.backend.close()
    s2 = open_store(tmp_path)
    assert (s2.rev, s2.compact_rev) == (3, 3)
    assert put(s2, b"a", b"2").mod_revision == 4
    s2.backend.close()


CRASHER = textwrap.dedent(
    """
    import os, sys
    from petcd.backend import Backend
    from petcd.mvcc import KVStore
    s = KVStore(Backend(sys.argv[1]))
    for i in range(1, 21):
        with s.write() as t:
            t.put(b"k%d" % i, b"v")
            t.set_consistent_index(i)
        if i == 12:
            s.backend.force_commit()
    os._exit(0)  # a crash: entries 13..20 were never committed
    """
)


def test_crash_loses_only_uncommitted_entries_with_their_index(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    subprocess.run([sys.executable, "-c", CRASHER, db], check=True, env={**os.environ})
    s = KVStore(Backend(db))
    # The consistent index matches the data exactly, so replaying entries 13.. is idempotent.
    assert s.consistent_index == 12
    assert s.rev == 13
    assert [kv.key for kv in s.range(b"k", b"l").kvs] == sorted(b"k%d" % i for i in range(1, 13))
    s.backend.close()
