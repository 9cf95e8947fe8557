"""Helpers shared by the WAL tests."""

from __future__ import annotations

import os

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal.record import Record, scan_segment
from petcd.wal.segments import list_segments


def ent(index: int, term: int = 1, data: bytes | None = None) -> raftpb.Entry:
    return raftpb.Entry(index=index, term=term, data=data if data is not None else f"e{index}".encode())


def hs(term: int = 1, vote: int = 0, commit: int = 0) -> raftpb.HardState:
    return raftpb.HardState(term=term, vote=vote, commit=commit)


def records_of(path: str) -> list[Record]:
    """The good records of a segment file (as the reader sees them)."""
    with open(path, "rb") as f:
        buf = f.read()
    return scan_segment(buf, path, None, is_last=True).records


def last_segment(d: str) -> str:
    return list_segments(d)[-1].path


def data_end(path: str) -> int:
    """Offset just past the last good record of a segment."""
    with open(path, "rb") as f:
        buf = f.read()
    return scan_segment(buf, path, None, is_last=True).end


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def file_size(path: str) -> int:
    return os.path.getsize(path)
