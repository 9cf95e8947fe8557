"""Offline verification reads without locking or repairing."""

from __future__ import annotations

import os

import pytest
from walhelpers import ent, flip_byte, hs, last_segment, records_of

from petcd.wal import WAL, CorruptWALError, WalSnapshot, verify
from petcd.wal.verify import main


def _make(d: str) -> WAL:
    w = WAL.create(d, b"meta", segment_size=1024, preallocate=False)
    for i in range(1, 31):
        w.save(hs(1, 1, i), [ent(i, data=bytes(40))])
    w.save_snapshot(WalSnapshot(10, 1))
    return w


def test_verify_report_while_open(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    w = _make(d)  # still open and locked: verify must not need the lock
    r = verify(d)
    assert (r.first_index, r.last_index, r.entries) == (1, 30, 30)
    assert r.metadata == b"meta" and r.hard_state == hs(1, 1, 30)
    assert r.snapshots == [WalSnapshot(0, 0), WalSnapshot(10, 1)]
    assert r.torn_tail is None and len(r.segments) > 1
    assert r.record_counts["entry"] == 30
    r = verify(d, WalSnapshot(10, 1))
    assert (r.first_index, r.last_index) == (11, 30)
    w.close()


def test_verify_reports_torn_tail_without_repairing(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    _make(d).close()
    path = last_segment(d)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 3)
    r = verify(d)
    assert r.torn_tail is not None and r.torn_tail.path == path
    assert os.path.getsize(path) == size - 3
    assert main([d]) == 0
    assert "torn tail" in capsys.readouterr().out


def test_verify_fails_on_corruption(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    d = os.path.join(tmp_path, "wal")
    _make(d).close()
    path = last_segment(d)
    rec = records_of(path)[2]
    flip_byte(path, rec.offset + 14)
    with pytest.raises(CorruptWALError) as ei:
        verify(d)
    assert ei.value.offset == rec.offset
    assert main([d]) == 1
    err = capsys.readouterr().err
    assert path in err and f"offset {rec.offset}" in err
