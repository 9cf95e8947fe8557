"""Read a run of segments into metadata, the last hard state and the live entries.

Shared by WAL.read_all (which then repairs the tail and appends), by
WAL.valid_snapshot_entries and by the offline verifier (which change nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal.errors import CorruptWALError, SnapshotMismatchError, WALError
from petcd.wal.record import RecordType, scan_segment
from petcd.wal.segments import Segment
from petcd.wal.types import WalSnapshot

_ENTRY, _STATE, _METADATA, _SNAPSHOT = (
    int(RecordType.ENTRY), int(RecordType.STATE), int(RecordType.METADATA), int(RecordType.SNAPSHOT)
)


@dataclass(slots=True)
class TornTail:
    path: str
    offset: int  # where the torn record starts (= where the file is cut)
    file_size: int


@dataclass(slots=True)
class LogContents:
    metadata: bytes | None = None
    state: raftpb.HardState = field(default_factory=raftpb.HardState)
    entries: list[raftpb.Entry] = field(default_factory=list)
    snapshots: list[WalSnapshot] = field(default_factory=list)
    snap_found: bool = False
    enti: int = 0  # index of the last entry record read (the next segment is named enti + 1)
    crc: int = 0
    end: int = 0  # end of valid data in the last segment
    file_size: int = 0  # size of the last segment file
    dirty_tail: bool = False  # bytes after `end` that are not zero padding
    torn: TornTail | None = None
    counts: dict[int, int] = field(default_factory=lambda: dict.fromkeys(map(int, RecordType), 0))


def read_log(
    segs: list[Segment], start: WalSnapshot, *, last_is_tail: bool = True, collect_entries: bool = True
) -> LogContents:
    """Decode `segs` in order, keeping entries after `start.index`.

    `last_is_tail`: the last of `segs` is the WAL's last segment, so a torn record at its end
    is tolerated (reported in `torn`) instead of being corruption. Without `collect_entries`
    entry records are only counted (for callers that read from a purged head).
    """
    out = LogContents(enti=start.index)
    ents = out.entries
    base = start.index
    prev_crc: int | None = None
    counts = out.counts
    entry_from = raftpb.Entry.FromString
    for i, seg in enumerate(segs):
        try:
            with open(seg.path, "rb") as f:
                buf = f.read()
        except OSError as e:
            raise WALError(f"wal: cannot read {seg.path}: {e}") from e
        is_last = last_is_tail and i == len(segs) - 1
        if seg.seq == 0:
            prev_crc = 0  # the chain starts at 0, so even the first crc record is checked
        scan = scan_segment(buf, seg.path, prev_crc, is_last)
        prev_crc = scan.crc
        for rec in scan.records:
            rtype = rec.type
            counts[rtype] += 1
            try:
                if rtype == _ENTRY:
                    ent = entry_from(rec.data)
                    if not collect_entries:
                        out.enti = ent.index
                        continue
                    if ent.index > base:
                        pos = ent.index - base - 1
                        if pos > len(ents):
                            raise WALError(
                                f"wal: entry {ent.index} in {seg.path} at offset {rec.offset} leaves a gap "
                                f"after entry {base + len(ents)} (snapshot index {base})"
                            )
                        # a later write of an index replaces it and everything after it
                        del ents[pos:]
                        ents.append(ent)
                    out.enti = ent.index
                elif rtype == _STATE:
                    out.state = raftpb.HardState.FromString(rec.data)
                elif rtype == _METADATA:
                    if out.metadata is not None and out.metadata != rec.data:
                        raise WALError(f"wal: metadata conflict in {seg.path} at offset {rec.offset}")
                    out.metadata = rec.data
                elif rtype == _SNAPSHOT:
                    snap = WalSnapshot.decode(rec.data)
                    out.snapshots.append(snap)
                    if snap.index == start.index:
                        if snap.term != start.term:
                            raise SnapshotMismatchError(
                                f"wal: snapshot mismatch: WAL has index {snap.index} at term {snap.term}, "
                                f"expected term {start.term}"
                            )
                        out.snap_found = True
            except WALError:
                raise
            except Exception as exc:  # undecodable payload behind a good crc: written wrong, not torn
                raise CorruptWALError(
                    seg.path, rec.offset, f"cannot decode {RecordType(rtype).name}: {exc}"
                ) from exc
        if i == len(segs) - 1:
            out.crc = scan.crc
            out.end = scan.end
            out.file_size = len(buf)
            out.dirty_tail = scan.dirty_tail
            if scan.torn_at is not None:
                out.torn = TornTail(seg.path, scan.torn_at, len(buf))
    return out
