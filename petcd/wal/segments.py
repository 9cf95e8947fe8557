"""Segment file names and the set of segments in a WAL directory.

A segment is `<seq:016x>-<index:016x>.wal`: `seq` counts segments from 0 without gaps and
`index` is the raft index the segment's first new entry was expected to have when it was cut
(the last entry index written before it, plus one).
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

from petcd.wal.errors import WALError

_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


@dataclass(frozen=True, slots=True)
class Segment:
    seq: int
    index: int
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    m = _NAME_RE.match(name)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)


def list_segments(directory: str) -> list[Segment]:
    """The directory's segments in sequence order; a gap in the sequence is an error."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    segs: list[Segment] = []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is not None:
            segs.append(Segment(parsed[0], parsed[1], os.path.join(directory, name)))
    segs.sort(key=lambda s: s.seq)
    for a, b in itertools.pairwise(segs):
        if b.seq != a.seq + 1:
            raise WALError(
                f"wal: segment sequence numbers are not contiguous in {directory}: {a.name} then {b.name}"
            )
    return segs


def search_index(segs: list[Segment], index: int) -> int:
    """Position of the segment from which reading must start to find every entry after `index`.

    That is the last segment whose name index is <= `index`: entries after `index` were all
    written to it or to later ones. Returns -1 if there is none (older segments were purged).
    """
    for i in range(len(segs) - 1, -1, -1):
        if segs[i].index <= index:
            return i
    return -1
