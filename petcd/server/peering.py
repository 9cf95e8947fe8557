"""The member's side of the cluster transport: raft messages in and out, snapshots of the
backend shipped to followers that fell too far behind, and discovery of an existing
cluster for a member that joins it (``--initial-cluster-state=existing``).

A snapshot for a follower is the raft snapshot (membership) plus a consistent copy of
the backend file. The receiving member's transport stores the file; it is moved to
``<snap dir>/<index>.snap.db`` before raft sees the MsgSnap, and installed when the
snapshot comes out of a Ready (``EtcdServer._apply_snapshot``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from petcd.peer import PeerConfig, PeerTransport
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import RaftError
from petcd.server.bootstrap import BootstrapError, Member

if TYPE_CHECKING:
    from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.server")


def snapshot_db_path(snap_dir: Path, index: int) -> Path:
    return snap_dir / f"{index:016x}.snap.db"


class Peering:
    def __init__(self, srv: EtcdServer) -> None:
        self.srv = srv
        s = srv.settings
        self.snap_dir = srv.paths.snap_dir
        self.transport = PeerTransport(
            srv.member_id,
            srv.cluster_id,
            on_messages=self._on_messages,
            on_snapshot=self._on_snapshot,
            report_unreachable=self._report_unreachable,
            report_snapshot=self._report_snapshot,
            snapshot_source=self._snapshot_db_copy,
            snapshot_dir=self.snap_dir / "incoming",
            # one gRPC server carries both APIs, so a batch must fit its message limit
            config=PeerConfig(max_batch_bytes=s.max_recv_message_bytes - 64 * 1024),
            on_removed=self._on_removed,
            cluster_version=lambda: srv.membership.cluster_version,
        )

    async def start(self, members: list[Member]) -> None:
        for m in members:
            self.transport.add_peer(m.id, m.peer_urls)
        self.transport.mark_removed(self.srv.membership.removed)
        await self.transport.start()

    async def stop(self) -> None:
        await self.transport.stop()

    def send(self, msgs: list[raftpb.Message]) -> None:
        self.transport.send(msgs)

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
        members = self.srv.membership.members
        for peer_id in list(self.transport.peers()):
            if peer_id not in members:
                self.transport.remove_peer(peer_id)
        for m in members.values():
            self.transport.add_peer(m.id, m.peer_urls)
        self.transport.mark_removed(self.srv.membership.removed)

    # -- callbacks from the transport --------------------------------------------------

    def _on_messages(self, msgs: list[raftpb.Message]) -> None:
        srv = self.srv
        if srv.raft is None or srv.driver is None:
            return
        for m in msgs:
            try:
                srv.raft.node.step(m)
            except RaftError as exc:
                log.warning("dropping raft message from %x: %s", getattr(m, "from"), exc)
        srv.driver.notify()

    async def _on_snapshot(self, msg: raftpb.Message, path: str) -> None:
        srv = self.srv
        assert srv.raft is not None and srv.driver is not None
        dest = snapshot_db_path(self.snap_dir, msg.snapshot.metadata.index)
        await asyncio.to_thread(os.replace, path, dest)
        log.info(
            "received snapshot at index %d from %x (%d bytes)",
            msg.snapshot.metadata.index,
            getattr(msg, "from"),
            dest.stat().st_size,
        )
        srv.raft.node.step(msg)
        srv.driver.notify()

    def _report_unreachable(self, peer: int) -> None:
        srv = self.srv
        if srv.raft is not None and srv.driver is not None:
            srv.raft.node.report_unreachable(peer)
            srv.driver.notify()

    def _report_snapshot(self, peer: int, failed: bool) -> None:
        srv = self.srv
        if srv.raft is not None and srv.driver is not None:
            srv.raft.node.report_snapshot(peer, failed)
            srv.driver.notify()

    async def _snapshot_db_copy(self, msg: raftpb.Message) -> str:
        srv = self.srv
        assert srv.backend is not None
        fd, path = tempfile.mkstemp(prefix="outgoing-", suffix=".db", dir=str(self.snap_dir))
        os.close(fd)
        srv.backend.force_commit()
        await asyncio.to_thread(srv.backend.snapshot_to, path)
        return path

    def _on_removed(self, peer: int) -> None:
        srv = self.srv
        if not srv._stopping:
            log.warning("member %x says this member (%x) was removed from the cluster; stopping", peer, srv.member_id)
            asyncio.get_running_loop().create_task(srv.stop())

    def take_snapshot_db(self, index: int) -> Path | None:
        """The received backend file for the snapshot at index; stale ones are removed."""
        want = snapshot_db_path(self.snap_dir, index)
        for p in self.snap_dir.glob("*.snap.db"):
            if p != want:
                p.unlink(missing_ok=True)
        return want if want.exists() else None


async def discover_cluster(own_peer_urls: list[str], peers: list[Member], timeout: float = 10.0) -> tuple[int, int, list[Member]]:
    """For a member joining an existing cluster: (its id, the cluster id, the members), asked
    of the other members' peer URLs, which serve the client API too."""
    own = set(own_peer_urls)
    errors_seen: list[str] = []
    for peer in peers:
        if set(peer.peer_urls) & own:
            continue
        for url in peer.peer_urls:
            target = url.split("://", 1)[-1].rstrip("/")
            try:
                async with grpc.aio.insecure_channel(target) as ch:
                    resp = await pb_grpc.ClusterStub(ch).MemberList(pb.MemberListRequest(), timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                errors_seen.append(f"{url}: {exc.details()}")
                continue
            members = [
                Member(m.ID, m.name, list(m.peerURLs), list(m.clientURLs), m.isLearner) for m in resp.members
            ]
            for m in members:
                if set(m.peer_urls) == own:
                    return m.id, resp.header.cluster_id, members
            raise BootstrapError(
                f"this member's peer URLs {sorted(own)} are not in the cluster's member list "
                f"(asked {url}); add it first with `etcdctl member add <name> --peer-urls=...`"
            )
    raise BootstrapError(
        "cannot join the existing cluster: no member in --initial-cluster answered"
        + (f" ({'; '.join(errors_seen)})" if errors_seen else "")
    )
