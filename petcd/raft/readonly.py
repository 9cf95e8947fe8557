"""Leader-side bookkeeping for ReadIndex requests under ReadOnlyOption.SAFE.

A read request arriving at the leader records the current commit index and a unique context.
The leader then sends a heartbeat carrying that context; once a quorum of voters echoes it, the
leader knows it was still leader when the request arrived, so the recorded index is safe to read
at. Requests are answered in arrival order: an ack for a later context also confirms every
earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from petcd.proto.raftpb import raft_pb2 as raftpb

from .types import ReadOnlyOption


@dataclass(slots=True)
class ReadIndexStatus:
    req: raftpb.Message
    index: int
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: raftpb.Message) -> None:
        ctx = m.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=m, index=index)
        self.queue.append(ctx)

    def recv_ack(self, id_: int, ctx: bytes) -> dict[int, bool] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[id_] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Pop and return every request up to and including the one with ``ctx``."""
        try:
            i = self.queue.index(ctx)
        except ValueError:
            return []
        done = self.queue[:i + 1]
        del self.queue[:i + 1]
        return [self.pending.pop(c) for c in done]

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
