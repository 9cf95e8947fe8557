"""WAL round trips, overwrites, segments, snapshot markers, retention, locking, group commit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from walhelpers import ent, hs

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal import (
    WAL,
    CorruptWALError,
    SnapshotMismatchError,
    WALError,
    WALNotFoundError,
    WalSnapshot,
)
from petcd.wal.segments import list_segments, parse_segment_name


@pytest.fixture(params=[True, False], ids=["prealloc", "noprealloc"])
def prealloc(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def reopen(d: str, snap: WalSnapshot = WalSnapshot(), **kw: object) -> tuple[WAL, bytes, raftpb.HardState, list[raftpb.Entry]]:  # noqa: B008
    w = WAL.open(d, snap, **kw)  # type: ignore[arg-type]
    md, st, ents = w.read_all()
    return w, md, st, ents


def test_round_trip(tmp_path: os.PathLike[str], prealloc: bool) -> None:
    d = os.path.join(tmp_path, "wal")
    assert not WAL.exists(d)
    w = WAL.create(d, b"cluster-1", preallocate=prealloc)
    assert WAL.exists(d)
    w.save(hs(1, 1, 0), [ent(1), ent(2)])
    w.save(hs(1, 1, 2), [ent(3, data=b"\x00" * 1000)])
    w.save(hs(2, 0, 3), [])
    w.close()
    w, md, st, ents = reopen(d, preallocate=prealloc)
    assert md == b"cluster-1"
    assert st == hs(2, 0, 3)
    assert [(e.index, e.term, e.data) for e in ents] == [(1, 1, b"e1"), (2, 1, b"e2"), (3, 1, b"\x00" * 1000)]
    assert w.last_index == 3
    # appending continues after what was read
    w.save(None, [ent(4, term=2)])
    w.close()
    w, _, st, ents = reopen(d)
    assert [e.index for e in ents] == [1, 2, 3, 4]
    assert st == hs(2, 0, 3)
    w.close()


def test_entry_types_and_fields_survive(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    e = raftpb.Entry(index=1, term=7, type=raftpb.EntryConfChange, data=b"cc")
    w = WAL.create(d, b"")
    w.save(hs(7, 3, 1), [e])
    w.close()
    w, md, st, ents = reopen(d)
    assert md == b"" and ents == [e] and st == hs(7, 3, 1)
    w.close()


def test_create_refuses_existing_and_open_needs_wal(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    with pytest.raises(WALNotFoundError):
        WAL.open(d)
    WAL.create(d, b"m").close()
    with pytest.raises(WALError, match="already holds a WAL"):
        WAL.create(d, b"m")
    assert not os.path.exists(d + ".tmp")


def test_create_into_existing_empty_dir(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    os.makedirs(d)
    WAL.create(d, b"m").close()
    w, md, _, _ = reopen(d)
    assert md == b"m"
    w.close()


def test_read_all_once_and_before_save(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    WAL.create(d, b"m").close()
    w = WAL.open(d)
    with pytest.raises(WALError, match="read_all"):
        w.save(hs(1), [ent(1)])
    w.read_all()
    with pytest.raises(WALError, match="only allowed once"):
        w.read_all()
    w.close()
    with pytest.raises(WALError):
        w.save(hs(1), [ent(1)])


def test_empty_save_writes_nothing(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m", preallocate=False)
    size = os.path.getsize(list_segments(d)[0].path)
    w.save(None, [])
    w.save(raftpb.HardState(), [])
    assert os.path.getsize(list_segments(d)[0].path) == size
    w.close()


def test_overwritten_tail_replaces_later_entries(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m")
    w.save(hs(1, 1, 2), [ent(i, 1) for i in range(1, 6)])
    # a new leader at term 2 overwrites from index 3
    w.save(hs(2, 2, 2), [ent(3, 2, b"new3"), ent(4, 2, b"new4")])
    w.close()
    w, _, st, ents = reopen(d)
    assert [(e.index, e.term) for e in ents] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert ents[2].data == b"new3"
    assert st.term == 2
    w.close()


def test_entry_gap_is_an_error(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m")
    w.save(hs(1), [ent(1), ent(2), ent(5)])
    w.close()
    with pytest.raises(WALError, match="gap"):
        reopen(d)


def test_segment_cut_and_read_across_segments(tmp_path: os.PathLike[str], prealloc: bool) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"meta", segment_size=2048, preallocate=prealloc)
    for i in range(1, 121):
        w.save(hs(1, 1, i - 1), [ent(i, data=bytes(60))])
    segs = w.segments
    assert len(segs) > 3
    # names: contiguous seq; index = first entry written to the segment
    for s in segs:
        assert parse_segment_name(s.name) == (s.seq, s.index)
    assert [s.seq for s in segs] == list(range(len(segs)))
    for s in segs[1:]:
        assert s.index > 1
    # finished segments are trimmed to their data
    for s in segs[:-1]:
        assert os.path.getsize(s.path) < 2048 + 200
    w.close()
    w, md, st, ents = reopen(d, segment_size=2048, preallocate=prealloc)
    assert md == b"meta"
    assert [e.index for e in ents] == list(range(1, 121))
    assert st == hs(1, 1, 119)
    w.close()


def test_new_segment_carries_metadata_and_hard_state(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"meta", segment_size=1024)
    i = 0
    while len(w.segments) < 3:
        i += 1
        w.save(hs(3, 1, i), [ent(i, 3, bytes(50))])
    w.save_snapshot(WalSnapshot(i, 3))
    w.close()
    # reading from the last segment alone yields metadata and hard state
    w, md, st, ents = reopen(d, WalSnapshot(i, 3))
    assert md == b"meta" and st == hs(3, 1, i) and ents == []
    w.close()


def test_snapshot_marker_matching(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m")
    w.save(hs(1, 1, 5), [ent(i) for i in range(1, 11)])
    cs = raftpb.ConfState(voters=[1, 2, 3])
    w.save_snapshot(WalSnapshot(5, 1, cs))
    w.close()
    w, _, _, ents = reopen(d, WalSnapshot(5, 1))
    assert [e.index for e in ents] == [6, 7, 8, 9, 10]
    w.close()
    with pytest.raises(SnapshotMismatchError, match="term"):
        reopen(d, WalSnapshot(5, 2))
    with pytest.raises(SnapshotMismatchError, match="not found"):
        reopen(d, WalSnapshot(4, 1))
    # the zero snapshot needs no matching marker beyond the one create() wrote
    w, _, _, ents = reopen(d, WalSnapshot())
    assert len(ents) == 10
    w.close()
    snaps = WAL.valid_snapshot_entries(d)
    assert snaps == [WalSnapshot(0, 0), WalSnapshot(5, 1)]
    assert snaps[1].conf_state == cs


def test_valid_snapshot_entries_needs_commit(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m")
    w.save(hs(1, 1, 3), [ent(i) for i in range(1, 8)])
    w.save_snapshot(WalSnapshot(3, 1))
    w.save_snapshot(WalSnapshot(6, 1))  # not yet covered by a committed hard state
    assert WAL.valid_snapshot_entries(d) == [WalSnapshot(0, 0), WalSnapshot(3, 1)]
    w.save(hs(1, 1, 7), [])
    assert WAL.valid_snapshot_entries(d) == [WalSnapshot(0, 0), WalSnapshot(3, 1), WalSnapshot(6, 1)]
    w.close()


def _fill_segments(d: str, n_segments: int) -> tuple[WAL, int]:
    w = WAL.create(d, b"m", segment_size=1024, preallocate=False)
    i = 0
    while len(w.segments) < n_segments:
        i += 1
        w.save(hs(1, 1, i), [ent(i, data=bytes(100))])
    return w, i


def test_release_and_purge(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w, _ = _fill_segments(d, 9)
    segs = w.segments
    assert w.purge(keep=1) == []  # nothing released yet
    # releasing to an index inside segment 4 frees segments 0..3
    target = segs[4].index + 1
    w.save_snapshot(WalSnapshot(target, 1))
    w.release_lock_to(target)
    assert w.purge(keep=0) == []  # 0 keeps everything (etcd's --max-wals=0)
    removed = w.purge(keep=7)  # but keep at least 7 files
    assert removed == [s.path for s in segs[:2]]
    removed = w.purge(keep=1)
    assert removed == [s.path for s in segs[2:4]]
    assert [s.name for s in w.segments] == [s.name for s in segs[4:]]
    assert [s.name for s in list_segments(d)] == [s.name for s in segs[4:]]
    # releasing to a lower index later never un-releases; the current segment is never purged
    w.release_lock_to(1)
    w.release_lock_to(10**9)
    w.purge(keep=1)
    assert len(list_segments(d)) == 1
    w.close()
    # opening at the snapshot still works; opening from the start does not
    with pytest.raises(WALError, match="reaches back"):
        WAL.open(d, WalSnapshot())


def test_open_after_purge_from_snapshot(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w, last = _fill_segments(d, 6)
    snap_index = w.segments[3].index + 2
    w.save_snapshot(WalSnapshot(snap_index, 1))
    w.release_lock_to(snap_index)
    w.purge(keep=1)
    w.close()
    w, _, st, ents = reopen(d, WalSnapshot(snap_index, 1))
    assert [e.index for e in ents] == list(range(snap_index + 1, last + 1))
    assert st.commit == last
    w.close()
    assert WAL.valid_snapshot_entries(d)[-1] == WalSnapshot(snap_index, 1)


def test_missing_middle_segment(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w, _ = _fill_segments(d, 4)
    w.close()
    os.remove(list_segments(d)[1].path)
    with pytest.raises(WALError, match="not contiguous"):
        reopen(d)


def test_swapped_segment_breaks_crc_chain(tmp_path: os.PathLike[str]) -> None:
    # segment 2 of another WAL with the same shape: every record is valid on its own
    a, b = os.path.join(tmp_path, "a"), os.path.join(tmp_path, "b")
    wa, _ = _fill_segments(a, 4)
    wa.close()
    wb = WAL.create(b, b"m", segment_size=1024, preallocate=False)
    i = 0
    while len(wb.segments) < 4:
        i += 1
        wb.save(hs(1, 1, i), [ent(i, data=b"\x01" * 100)])
    wb.close()
    sa, sb = list_segments(a)[2], list_segments(b)[2]
    assert sa.name == sb.name
    with open(sb.path, "rb") as src, open(sa.path, "wb") as dst:
        dst.write(src.read())
    with pytest.raises(CorruptWALError, match="crc chain") as ei:
        reopen(a)
    assert ei.value.path == sa.path and ei.value.offset == 0


def test_lock_in_process_and_across_processes(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m")
    with pytest.raises(WALError, match="locked by another process"):
        WAL.open(d)
    code = (
        "import sys\n"
        "from petcd.wal import WAL, WALError\n"
        "try:\n    WAL.open(sys.argv[1])\nexcept WALError as e:\n    print(e); sys.exit(3)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "locked" in r.stdout
    w.close()
    w2, _, _, _ = reopen(d)  # released on close
    w2.close()


def test_group_commit_one_write_one_sync_per_save(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m")
    calls = {"pwrite": 0, "fdatasync": 0}
    real_pwrite, real_fdatasync = os.pwrite, os.fdatasync

    def pwrite(fd: int, data: bytes, off: int) -> int:
        calls["pwrite"] += 1
        return real_pwrite(fd, data, off)

    def fdatasync(fd: int) -> None:
        calls["fdatasync"] += 1
        real_fdatasync(fd)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    w.save(hs(1, 1, 0), [ent(i) for i in range(1, 257)])
    assert calls == {"pwrite": 1, "fdatasync": 1}
    w.save(hs(1, 1, 256), [ent(257)], sync=False)
    assert calls == {"pwrite": 2, "fdatasync": 1}
    w.save_snapshot(WalSnapshot(10, 1))
    assert calls == {"pwrite": 3, "fdatasync": 2}
    monkeypatch.undo()
    w.close()
    w, _, st, ents = reopen(d)
    assert len(ents) == 257 and st.commit == 256
    w.close()


def test_save_snapshot_advances_next_segment_index(tmp_path: os.PathLike[str]) -> None:
    # after a snapshot from the leader the next segment is named past the snapshot index
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m", segment_size=512, preallocate=False)
    w.save_snapshot(WalSnapshot(1000, 4))
    w.save(hs(4, 1, 1000), [ent(1001, 4, bytes(600))])
    assert w.segments[-1].index == 1002
    w.close()
    w, _, _, ents = reopen(d, WalSnapshot(1000, 4))
    assert [e.index for e in ents] == [1001]
    w.close()
