"""Record framing: encode records and scan a segment's bytes back into records.

A frame is a 12-byte header, the record data, then 0-7 zero bytes so every frame starts on an
8-byte boundary:

    u32 LE  length of data
    u32 LE  crc
    u8      record type (1 metadata, 2 entry, 3 hard state, 4 crc, 5 snapshot marker)
    u8      number of padding bytes after the data
    2 bytes zero

The crc is chained: crc32c(type byte + data) started from the previous record's crc, so a
record that is lost, duplicated or moved breaks the chain. A crc record carries no data; its crc
field *is* the running crc at the start of its segment, which lets a reader that starts at a
later segment pick the chain up and lets one that crosses a segment boundary check it.

Scanning stops at the first frame that does not check out. What happens then depends on where
it is: in the last segment, if nothing valid follows it, it is a torn write (the tail is cut
off); anywhere else it is corruption (CorruptWALError with the file and offset). "Something
valid follows" means a later frame whose crc chains from the bad frame's stored crc, or two
consecutive frames at an aligned offset that chain to each other: random bytes pass either
test with probability about 2**-32.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from crc32c import crc32c

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal.errors import CorruptWALError

HEADER = struct.Struct("<IIBB2x")
HEADER_SIZE = HEADER.size  # 12
HEADER_CHECK = struct.Struct("<IIBBH")  # the same header with its reserved bytes, to check them
ALIGN = 8
_ZEROS = bytes(ALIGN)
# the largest data length accepted when decoding; a bigger value is a damaged header
MAX_RECORD_SIZE = 1 << 30


class RecordType(IntEnum):
    METADATA = 1
    ENTRY = 2
    STATE = 3
    CRC = 4
    SNAPSHOT = 5


_VALID_TYPES = frozenset(int(t) for t in RecordType)
_DATA_TYPES = _VALID_TYPES - {int(RecordType.CRC)}
_TYPE_BYTES = {int(t): bytes((int(t),)) for t in RecordType}
# candidate headers for the "does valid data follow?" scan: type byte, pad byte, two zero bytes
_HEADER_TAIL_RE = re.compile(rb"[\x01-\x05][\x00-\x07]\x00\x00", re.DOTALL)


def pad_for(length: int) -> int:
    return -(HEADER_SIZE + length) % ALIGN


def chain_crc(rtype: int, data: bytes | memoryview, prev: int) -> int:
    return int(crc32c(data, crc32c(_TYPE_BYTES[rtype], prev)))


def encode(rtype: int, data: bytes, prev_crc: int, out: list[bytes]) -> int:
    """Append the frame's pieces to `out`; return the new running crc."""
    if rtype == RecordType.CRC:
        out.append(HEADER.pack(0, prev_crc, rtype, pad_for(0)))
        out.append(_ZEROS[: pad_for(0)])
        return prev_crc
    crc = chain_crc(rtype, data, prev_crc)
    pad = pad_for(len(data))
    out.append(HEADER.pack(len(data), crc, rtype, pad))
    out.append(data)
    if pad:
        out.append(_ZEROS[:pad])
    return crc


def encode_entries(entries: Iterable[raftpb.Entry], prev_crc: int, out: list[bytes]) -> int:
    """encode() for a batch of entries, inlined: this loop is the WAL's hot path."""
    crc = prev_crc
    tb = _TYPE_BYTES[RecordType.ENTRY]
    etype = int(RecordType.ENTRY)
    pack = HEADER.pack
    append = out.append
    for e in entries:
        data = e.SerializeToString()
        n = len(data)
        crc = crc32c(data, crc32c(tb, crc))
        pad = -(HEADER_SIZE + n) % ALIGN
        append(pack(n, crc, etype, pad))
        append(data)
        if pad:
            append(_ZEROS[:pad])
    return int(crc)


@dataclass(slots=True)
class Record:
    type: int
    data: bytes
    offset: int


@dataclass(slots=True)
class SegmentScan:
    records: list[Record]
    crc: int  # running crc after the last good record
    end: int  # offset just past the last good record
    torn_at: int | None  # offset of a torn record that was dropped (last segment only)
    dirty_tail: bool  # non-zero bytes after `end` (must be truncated before appending)


def _frame_at(buf: bytes, off: int) -> tuple[int, int, int, int] | None:
    """Parse a structurally plausible frame header at `off`: (length, crc, type, end) or None."""
    if off + HEADER_SIZE > len(buf):
        return None
    length, crc, rtype, pad = HEADER.unpack_from(buf, off)
    if rtype not in _VALID_TYPES or pad != pad_for(length) or length > MAX_RECORD_SIZE:
        return None
    if buf[off + 10] or buf[off + 11]:
        return None
    end = off + HEADER_SIZE + length + pad
    if end > len(buf) or (pad and any(buf[end - pad : end])):
        return None
    return length, crc, rtype, end


def _chains(buf: bytes, off: int, prev: int) -> bool:
    """Does the frame at `off` check out when its crc chains from `prev`?"""
    f = _frame_at(buf, off)
    if f is None:
        return False
    length, crc, rtype, _ = f
    if rtype == RecordType.CRC:
        return length == 0 and crc == prev
    start = off + HEADER_SIZE
    return chain_crc(rtype, memoryview(buf)[start : start + length], prev) == crc


def valid_data_after(buf: bytes, bad_off: int) -> bool:
    """True if a verifiable record exists after the bad frame at `bad_off` (so it is not a tail)."""
    f = _frame_at(buf, bad_off)
    if f is not None and _chains(buf, f[3], f[1]):
        return True
    for m in _HEADER_TAIL_RE.finditer(buf, bad_off + ALIGN + 8):
        off = m.start() - 8
        if off % ALIGN:
            continue
        g = _frame_at(buf, off)
        if g is not None and g[3] < len(buf) and _chains(buf, g[3], g[1]):
            return True
    return False


_ZERO_CHUNK = bytes(1 << 20)


def _all_zero(buf: bytes, start: int) -> bool:
    # chunked compare: a preallocated 64 MB tail is checked in ~20 ms, without a full copy
    n = len(buf)
    step = len(_ZERO_CHUNK)
    for i in range(start, n, step):
        j = min(n, i + step)
        if buf[i:j] != (_ZERO_CHUNK if j - i == step else bytes(j - i)):
            return False
    return True


def scan_segment(buf: bytes, path: str, prev_crc: int | None, is_last: bool) -> SegmentScan:
    """Decode every record of one segment.

    `prev_crc` is the running crc at the end of the previous segment read, or None when this is
    the first segment read (its leading crc record then starts the chain).
    """
    records: list[Record] = []
    append = records.append
    off = 0
    n = len(buf)
    crc = 0 if prev_crc is None else prev_crc
    unpack = HEADER_CHECK.unpack_from
    while True:
        if off + HEADER_SIZE > n:
            # EOF, or a fragment too short to be a header
            if off >= n or _all_zero(buf, off):
                break
            reason = "short record header"
        else:
            length, rcrc, rtype, pad, reserved = unpack(buf, off)
            end = off + HEADER_SIZE + length + pad
            if rtype in _DATA_TYPES and not reserved and pad == -(HEADER_SIZE + length) % ALIGN and end <= n:
                # the common case: a data record with a sane header
                if pad and buf[end - pad : end] != _ZEROS[:pad]:
                    reason = "non-zero padding"
                elif not records:
                    reason = "segment does not start with a crc record"
                else:
                    start = off + HEADER_SIZE
                    data = buf[start : start + length]
                    if crc32c(data, crc32c(_TYPE_BYTES[rtype], crc)) == rcrc:
                        crc = rcrc
                        append(Record(rtype, data, off))
                        off = end
                        continue
                    reason = "crc mismatch"
            elif not (length or rcrc or rtype or pad or reserved):
                # a zero header: the end of the written data in a preallocated file
                if _all_zero(buf, off):
                    break
                reason = "zeroed record header"
            elif rtype not in _VALID_TYPES or reserved or pad != pad_for(length):
                reason = "bad record header"
            elif end > n:
                reason = f"record length {length} runs past end of file ({n} bytes)"
            elif length != 0:  # only a crc record gets this far
                reason = "crc record with data"
            elif pad and buf[end - pad : end] != _ZEROS[:pad]:
                reason = "non-zero padding"
            elif (records or prev_crc is not None) and rcrc != crc:
                reason = f"crc chain broken: segment continues from {rcrc:#x}, expected {crc:#x}"
            else:
                crc = rcrc
                append(Record(rtype, b"", off))
                off = end
                continue
        # a bad frame at `off`
        if is_last and records and not valid_data_after(buf, off):
            return SegmentScan(records, crc, off, off, dirty_tail=True)
        raise CorruptWALError(path, off, reason)
    return SegmentScan(records, crc, off, None, dirty_tail=False)
