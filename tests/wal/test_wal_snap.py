"""Snapshotter: durable snapshot files, newest valid load, corrupt files set aside, purge."""

from __future__ import annotations

import os

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal import Snapshotter, WalSnapshot
from petcd.wal.snap import snap_name


def snap(index: int, term: int, data: bytes = b"state", voters: tuple[int, ...] = (1,)) -> raftpb.Snapshot:
    return raftpb.Snapshot(
        data=data,
        metadata=raftpb.SnapshotMetadata(index=index, term=term, conf_state=raftpb.ConfState(voters=list(voters))),
    )


def test_save_and_load_round_trip(tmp_path: os.PathLike[str]) -> None:
    s = Snapshotter(os.path.join(tmp_path, "snap"))
    assert s.load() is None
    s.save_snap(snap(10, 2, b"x" * 5000, (1, 2, 3)))
    assert os.listdir(s.dir) == [snap_name(2, 10)] == ["0000000000000002-000000000000000a.snap"]
    got = s.load()
    assert got == snap(10, 2, b"x" * 5000, (1, 2, 3))


def test_empty_snapshot_is_not_written(tmp_path: os.PathLike[str]) -> None:
    s = Snapshotter(os.path.join(tmp_path, "snap"))
    s.save_snap(raftpb.Snapshot())
    assert os.listdir(s.dir) == []


def test_load_returns_newest(tmp_path: os.PathLike[str]) -> None:
    s = Snapshotter(os.path.join(tmp_path, "snap"))
    for idx, term in [(5, 1), (20, 2), (12, 2), (30, 3)]:
        s.save_snap(snap(idx, term))
    got = s.load()
    assert got is not None and got.metadata.index == 30


def _corrupt(path: str, how: str) -> None:
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if how == "flip":
            data[len(data) // 2] ^= 0xFF
        elif how == "truncate":
            data = data[:6]
        elif how == "magic":
            data[0:4] = b"XXXX"
        f.seek(0)
        f.truncate()
        f.write(bytes(data))


def test_corrupt_newest_is_renamed_and_older_loaded(tmp_path: os.PathLike[str]) -> None:
    s = Snapshotter(os.path.join(tmp_path, "snap"))
    for i in (10, 20, 30, 40):
        s.save_snap(snap(i, 1, data=b"d%d" % i))
    _corrupt(os.path.join(s.dir, snap_name(1, 40)), "flip")
    _corrupt(os.path.join(s.dir, snap_name(1, 30)), "truncate")
    _corrupt(os.path.join(s.dir, snap_name(1, 20)), "magic")
    got = s.load()
    assert got is not None and got.metadata.index == 10 and got.data == b"d10"
    names = sorted(os.listdir(s.dir))
    assert names == sorted(
        [snap_name(1, 10)] + [snap_name(1, i) + ".broken" for i in (20, 30, 40)]
    )


def test_file_whose_name_disagrees_with_content_is_broken(tmp_path: os.PathLike[str]) -> None:
    s = Snapshotter(os.path.join(tmp_path, "snap"))
    s.save_snap(snap(10, 1))
    os.rename(os.path.join(s.dir, snap_name(1, 10)), os.path.join(s.dir, snap_name(1, 11)))
    assert s.load() is None
    assert os.listdir(s.dir) == [snap_name(1, 11) + ".broken"]


def test_load_newest_available(tmp_path: os.PathLike[str]) -> None:
    s = Snapshotter(os.path.join(tmp_path, "snap"))
    for i in (10, 20, 30):
        s.save_snap(snap(i, 2))
    # the WAL knows 10 and 20 (30 was saved to disk but its marker was not committed)
    walsnaps = [WalSnapshot(0, 0), WalSnapshot(10, 2), WalSnapshot(20, 2)]
    got = s.load_newest_available(walsnaps)
    assert got is not None and got.metadata.index == 20
    # a term mismatch does not count as present
    got = s.load_newest_available([WalSnapshot(20, 3), WalSnapshot(10, 2)])
    assert got is not None and got.metadata.index == 10
    # corrupt matching file: skipped, renamed, next match used
    _corrupt(os.path.join(s.dir, snap_name(2, 20)), "flip")
    got = s.load_newest_available(walsnaps)
    assert got is not None and got.metadata.index == 10
    assert s.load_newest_available([WalSnapshot(99, 9)]) is None


def test_purge_keeps_newest(tmp_path: os.PathLike[str]) -> None:
    s = Snapshotter(os.path.join(tmp_path, "snap"))
    for i in range(1, 9):
        s.save_snap(snap(i * 10, 1))
    with open(os.path.join(s.dir, "0000000000000001-0000000000000050.snap.db"), "wb") as f:
        f.write(b"not ours")
    assert s.purge(keep=0) == []
    removed = s.purge(keep=5)
    assert [os.path.basename(p) for p in removed] == [snap_name(1, i * 10) for i in (3, 2, 1)]
    left = sorted(n for n in os.listdir(s.dir) if n.endswith(".snap"))
    assert left == [snap_name(1, i * 10) for i in range(4, 9)]
    assert "0000000000000001-0000000000000050.snap.db" in os.listdir(s.dir)


def test_stale_tmp_files_removed_on_start(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "snap")
    os.makedirs(d)
    with open(os.path.join(d, snap_name(1, 5) + ".tmp"), "wb") as f:
        f.write(b"half")
    s = Snapshotter(d)
    assert os.listdir(d) == []
    assert s.load() is None
