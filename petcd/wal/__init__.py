"""petcd's write-ahead log and raft snapshot files.

On-disk format
==============

WAL directory: segment files `<seq:016x>-<index:016x>.wal` (seq counts from 0 without gaps;
index is the raft index the segment's first new entry was expected to have), plus `LOCK`, held
with flock(LOCK_EX) by the process that has the WAL open.

A segment is a sequence of frames, each starting on an 8-byte boundary:

    u32 LE  length of data            u32 LE  crc
    u8      type                      u8      padding byte count (0-7)
    2 bytes zero                      data, then the padding zeros

Types: 1 metadata (opaque bytes given to WAL.create), 2 entry (serialized raftpb.Entry),
3 hard state (serialized raftpb.HardState), 4 crc (no data; the crc field holds the running
crc at the start of the segment), 5 snapshot marker (u64 LE index, u64 LE term, serialized
raftpb.ConfState). The crc of every other record is CRC32C over its type byte and data,
starting from the previous record's crc (0 at the start of the first segment), so records
lost, duplicated or moved break the chain, across segment boundaries too.

Every segment starts with a crc record and the metadata; a segment made by a cut also carries
the last hard state. The first segment holds a zero snapshot marker. Segments are preallocated
(zero-filled) to the segment size; the data ends at the first all-zero header.

Reading: a bad frame (bad header, length past EOF, crc mismatch) in the last segment with no
verifiable record after it is a torn write and is cut off at open; any other bad frame is
CorruptWALError naming the file and offset.

Snapshot directory: `<term:016x>-<index:016x>.snap`: b"PSNP", u32 LE CRC32C of the payload,
payload = serialized raftpb.Snapshot. See petcd.wal.snap.
"""

from petcd.wal.errors import CorruptWALError, SnapshotMismatchError, WALError, WALNotFoundError
from petcd.wal.segments import Segment
from petcd.wal.snap import SnapshotCorruptError, Snapshotter
from petcd.wal.types import WalSnapshot
from petcd.wal.verify import VerifyReport, verify
from petcd.wal.wal import SEGMENT_SIZE, WAL

__all__ = [
    "SEGMENT_SIZE",
    "WAL",
    "CorruptWALError",
    "Segment",
    "SnapshotCorruptError",
    "SnapshotMismatchError",
    "Snapshotter",
    "VerifyReport",
    "WALError",
    "WALNotFoundError",
    "WalSnapshot",
    "verify",
]
