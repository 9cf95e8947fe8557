"""Offline WAL check (for petcdutl): read every segment, change nothing, report what is there.

    python -m petcd.wal.verify WAL_DIR [--snap-index N --snap-term T]

Exit status 0 when the WAL reads cleanly (a torn tail is reported but is not an error, since
the next open repairs it), 1 when it is corrupt.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal.errors import SnapshotMismatchError, WALError, WALNotFoundError
from petcd.wal.reader import TornTail, read_log
from petcd.wal.record import RecordType
from petcd.wal.segments import list_segments, search_index
from petcd.wal.types import WalSnapshot


@dataclass
class VerifyReport:
    segments: list[str]
    metadata: bytes
    hard_state: raftpb.HardState
    first_index: int  # first live entry after the snapshot (0 if none)
    last_index: int  # last live entry (0 if none)
    entries: int
    snapshots: list[WalSnapshot]
    torn_tail: TornTail | None
    record_counts: dict[str, int] = field(default_factory=dict)


def verify(directory: str, snap: WalSnapshot = WalSnapshot()) -> VerifyReport:  # noqa: B008
    """Read the WAL from `snap` without locking or repairing it.

    Raises CorruptWALError (file and offset), SnapshotMismatchError or WALError.
    """
    segs = list_segments(directory)
    if not segs:
        raise WALNotFoundError(f"wal: no WAL segments in {directory}")
    pos = search_index(segs, snap.index)
    if pos < 0:
        raise WALError(f"wal: no segment in {directory} reaches back to snapshot index {snap.index}")
    contents = read_log(segs[pos:], snap)
    if not snap.is_zero and not contents.snap_found:
        raise SnapshotMismatchError(f"wal: snapshot index {snap.index} term {snap.term} not found")
    if contents.metadata is None:
        raise WALError(f"wal: no metadata record in {directory}")
    ents = contents.entries
    return VerifyReport(
        segments=[s.name for s in segs[pos:]],
        metadata=contents.metadata,
        hard_state=contents.state,
        first_index=ents[0].index if ents else 0,
        last_index=ents[-1].index if ents else 0,
        entries=len(ents),
        snapshots=contents.snapshots,
        torn_tail=contents.torn,
        record_counts={RecordType(t).name.lower(): n for t, n in contents.counts.items()},
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m petcd.wal.verify", description="check a petcd WAL")
    ap.add_argument("dir")
    ap.add_argument("--snap-index", type=int, default=0)
    ap.add_argument("--snap-term", type=int, default=0)
    ns = ap.parse_args(argv)
    try:
        r = verify(ns.dir, WalSnapshot(ns.snap_index, ns.snap_term))
    except WALError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    hs = r.hard_state
    print(f"segments: {len(r.segments)} ({r.segments[0]} .. {r.segments[-1]})")
    print(f"entries: {r.entries} (index {r.first_index} .. {r.last_index})")
    print(f"hard state: term={hs.term} vote={hs.vote} commit={hs.commit}")
    print(f"snapshots: {[(s.index, s.term) for s in r.snapshots]}")
    print("records: " + ", ".join(f"{k}={v}" for k, v in r.record_counts.items()))
    if r.torn_tail is not None:
        t = r.torn_tail
        print(f"torn tail: {t.path} at offset {t.offset} ({t.file_size - t.offset} bytes will be cut on open)")
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["RecordType", "VerifyReport", "main", "verify"]
