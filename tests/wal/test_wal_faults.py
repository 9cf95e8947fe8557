"""Failing writes (ENOSPC, EIO) give clear errors and leave a WAL that reopens cleanly."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest
from walhelpers import ent, hs

from petcd.wal import WAL, WALError


def _failing_pwrite(allow: int) -> Callable[[int, bytes, int], int]:
    """A pwrite that writes `allow` more bytes in total, then fails with ENOSPC."""
    real = os.pwrite
    budget = [allow]

    def pwrite(fd: int, data: bytes, off: int) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, bytes(data[: budget[0]]), off)
        budget[0] -= n
        return n

    return pwrite


def _read(d: str, **kw: bool) -> list[int]:
    w = WAL.open(d, **kw)  # type: ignore[arg-type]
    _, _, ents = w.read_all()
    w.close()
    return [e.index for e in ents]


@pytest.mark.parametrize("prealloc", [True, False], ids=["prealloc", "noprealloc"])
def test_enospc_mid_write_is_undone(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch, prealloc: bool) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m", preallocate=prealloc)
    w.save(hs(1, 1, 0), [ent(1), ent(2)])
    monkeypatch.setattr(os, "pwrite", _failing_pwrite(50))
    with pytest.raises(WALError, match="no space left on device"):
        w.save(hs(1, 1, 2), [ent(i, data=bytes(100)) for i in range(3, 8)])
    monkeypatch.undo()
    # the partial bytes were cut back off, so the WAL goes on from the last whole record
    w.save(hs(1, 1, 2), [ent(3, data=b"retry")])
    w.close()
    assert _read(d) == [1, 2, 3]


def test_enospc_with_failed_undo_leaves_torn_tail(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m", preallocate=False)
    w.save(hs(1, 1, 0), [ent(1), ent(2)])
    monkeypatch.setattr(os, "pwrite", _failing_pwrite(70))

    def ftruncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "simulated")

    monkeypatch.setattr(os, "ftruncate", ftruncate)
    with pytest.raises(WALError, match="no space left on device"):
        w.save(hs(1, 1, 2), [ent(i, data=bytes(100)) for i in range(3, 8)])
    monkeypatch.undo()
    with pytest.raises(WALError, match="refusing to write"):
        w.save(None, [ent(3)])
    w.close()
    size = os.path.getsize(w.segments[-1].path)
    # on restart the partial record is a torn tail: cut off, and appending continues
    w = WAL.open(d, preallocate=False)
    _, _, ents = w.read_all()
    assert [e.index for e in ents] == [1, 2]
    assert os.path.getsize(w.segments[-1].path) < size
    w.save(None, [ent(3)])
    w.close()
    assert _read(d, preallocate=False) == [1, 2, 3]


def test_enospc_when_cutting_keeps_old_segment(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m", segment_size=600)

    def fallocate(fd: int, off: int, size: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    with pytest.raises(WALError, match="no space left on device"):
        w.save(hs(1, 1, 0), [ent(i, data=bytes(100)) for i in range(1, 8)])
    assert len(w.segments) == 1
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]
    monkeypatch.undo()
    w.save(hs(1, 1, 7), [ent(8)])  # the cut is retried
    assert len(w.segments) == 2
    w.close()
    assert _read(d) == list(range(1, 9))


def test_failed_fsync_is_permanent(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    d = os.path.join(tmp_path, "wal")
    w = WAL.create(d, b"m")

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "simulated")

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with pytest.raises(WALError, match="syncing"):
        w.save(hs(1, 1, 0), [ent(1)])
    monkeypatch.undo()
    with pytest.raises(WALError, match="refusing to write"):
        w.save(hs(1, 1, 0), [ent(2)])
    w.close()
