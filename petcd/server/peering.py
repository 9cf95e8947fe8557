"""The member's side of the cluster transport: raft messages in and out, and snapshots of the
backend shipped to followers that fell too far behind.

A snapshot for a follower is the raft snapshot (membership) plus a consistent copy of
the backend file. The receiving member's transport stores the file; it is moved to
``<snap dir>/<index>.snap.db`` before raft sees the MsgSnap, and installed when the
snapshot comes out of a Ready (``EtcdServer`` swaps in a new ``MemberState``).

The transport itself (``petcd.peer``) sits above the server: the server sees it as a
:class:`Transport`, made by a factory that is handed the :class:`PeerHandlers` (``petcd.peer.member``
builds a member with the real one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from petcd.clock import Clock
from petcd.config.settings import ServerSettings
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import RaftError
from petcd.server.bootstrap import Member, Paths
from petcd.server.raftnode import RaftNode
from petcd.server.state import StateCell

log = logging.getLogger("petcd.server")


class Transport(Protocol):
    """What the member uses of its peer transport."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def send(self, msgs: Sequence[raftpb.Message]) -> None: ...

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> bool: ...

    def remove_peer(self, peer_id: int) -> None: ...

    def mark_removed(self, peer_ids: Iterable[int]) -> None: ...

    def peers(self) -> dict[int, list[str]]: ...

    def active_since(self, peer_id: int) -> float | None: ...


@dataclass(frozen=True, slots=True)
class PeerHandlers:
    """What the transport calls (see ``petcd.peer.PeerTransport`` for each one's contract)."""

    member_id: int
    cluster_id: int
    on_messages: Callable[[list[raftpb.Message]], None]
    on_snapshot: Callable[[raftpb.Message, str], Awaitable[None]]
    report_unreachable: Callable[[int], None]
    report_snapshot: Callable[[int, bool], None]
    snapshot_source: Callable[[raftpb.Message], Awaitable[str]]
    snapshot_dir: Path
    max_batch_bytes: int
    on_removed: Callable[[int], None]
    cluster_version: Callable[[], str]


TransportFactory = Callable[[PeerHandlers], Transport]


def snapshot_db_path(snap_dir: Path, index: int) -> Path:
    return snap_dir / f"{index:016x}.snap.db"


class Peering:
    def __init__(
        self,
        settings: ServerSettings,
        paths: Paths,
        member_id: int,
        cluster_id: int,
        raft: RaftNode,
        cell: StateCell,
        initial_peers: list[Member],
        make_transport: TransportFactory,
        clock: Clock,
    ) -> None:
        self.member_id = member_id
        self._clock = clock
        self.snap_dir = paths.snap_dir
        self._raft = raft
        self._cell = cell
        self._initial_peers = initial_peers
        # set when a peer says this member was removed: the server stops
        self.removed = asyncio.Event()
        self.transport = make_transport(
            PeerHandlers(
                member_id=member_id,
                cluster_id=cluster_id,
                on_messages=self._on_messages,
                on_snapshot=self._on_snapshot,
                report_unreachable=raft.report_unreachable,
                report_snapshot=raft.report_snapshot,
                snapshot_source=self._snapshot_db_copy,
                snapshot_dir=self.snap_dir / "incoming",
                # one gRPC server carries both APIs, so a batch must fit its message limit
                max_batch_bytes=settings.max_recv_message_bytes - 64 * 1024,
                on_removed=self._on_removed,
                cluster_version=lambda: cell.state.membership.cluster_version,
            )
        )

    async def start(self) -> None:
        for m in self._initial_peers:
            self.transport.add_peer(m.id, m.peer_urls)
        self.transport.mark_removed(self._cell.state.membership.removed)
        await self.transport.start()

    async def stop(self) -> None:
        await self.transport.stop()

    def send(self, msgs: list[raftpb.Message]) -> None:
        self.transport.send(msgs)

    def active_since(self, member_id: int) -> float | None:
        """Since when the stream to member_id is up (None if it is down)."""
        return self.transport.active_since(member_id)

    def on_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Keep the peer set in step with applied membership (replays included)."""
        if cc.type == raftpb.ConfChangeRemoveNode:
            self.transport.remove_peer(cc.node_id)  # also refuses it from now on
        elif cc.context:
            # add, add learner or update: add_peer updates the URLs of a known peer
            urls = list(serverpb.ConfChangeContext.FromString(cc.context).member.peer_urls)
            self.transport.add_peer(cc.node_id, urls)

    def sync_members(self) -> None:
        """After a snapshot replaced the membership: peers are exactly the members."""
        membership = self._cell.state.membership
        members = membership.members
        for peer_id in list(self.transport.peers()):
            if peer_id not in members:
                self.transport.remove_peer(peer_id)
        for m in members.values():
            self.transport.add_peer(m.id, m.peer_urls)
        self.transport.mark_removed(membership.removed)

    # -- callbacks from the transport --------------------------------------------------

    def _on_messages(self, msgs: list[raftpb.Message]) -> None:
        for m in msgs:
            try:
                self._raft.step(m)
            except RaftError as exc:
                log.warning("dropping raft message from %x: %s", getattr(m, "from"), exc)

    async def _on_snapshot(self, msg: raftpb.Message, path: str) -> None:
        dest = snapshot_db_path(self.snap_dir, msg.snapshot.metadata.index)
        await self._clock.offload(os.replace, path, dest)
        log.info(
            "received snapshot at index %d from %x (%d bytes)",
            msg.snapshot.metadata.index,
            getattr(msg, "from"),
            dest.stat().st_size,
        )
        self._raft.step(msg)

    async def _snapshot_db_copy(self, msg: raftpb.Message) -> str:
        backend = self._cell.state.backend
        fd, path = tempfile.mkstemp(prefix="outgoing-", suffix=".db", dir=str(self.snap_dir))
        os.close(fd)
        backend.force_commit()
        await self._clock.offload(backend.snapshot_to, path)
        return path

    def _on_removed(self, peer: int) -> None:
        if not self.removed.is_set():
            log.warning("member %x says this member (%x) was removed from the cluster; stopping", peer, self.member_id)
            self.removed.set()

    def take_snapshot_db(self, index: int) -> Path | None:
        """The received backend file for the snapshot at index; stale ones are removed."""
        want = snapshot_db_path(self.snap_dir, index)
        for p in self.snap_dir.glob("*.snap.db"):
            if p != want:
                p.unlink(missing_ok=True)
        return want if want.exists() else None
