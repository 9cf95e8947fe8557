"""WalSnapshot: the snapshot marker recorded in the WAL."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from petcd.proto.raftpb import raft_pb2 as raftpb

_MARKER = struct.Struct("<QQ")


@dataclass(frozen=True, slots=True)
class WalSnapshot:
    """A snapshot's index and term (and conf state) as written to the WAL.

    Markers are matched by index and term only, so conf_state takes no part in equality.
    """

    index: int = 0
    term: int = 0
    conf_state: raftpb.ConfState | None = field(default=None, compare=False, hash=False)

    def encode(self) -> bytes:
        cs = b"" if self.conf_state is None else self.conf_state.SerializeToString()
        return _MARKER.pack(self.index, self.term) + cs

    @classmethod
    def decode(cls, data: bytes) -> WalSnapshot:
        if len(data) < _MARKER.size:
            raise ValueError(f"snapshot marker too short ({len(data)} bytes)")
        index, term = _MARKER.unpack_from(data)
        cs = raftpb.ConfState.FromString(data[_MARKER.size :]) if len(data) > _MARKER.size else None
        return cls(index, term, cs)

    @property
    def is_zero(self) -> bool:
        return self.index == 0 and self.term == 0
