"""Opening a member's data dir: a new member, or a restart from WAL + snapshot.

Layout, as etcd's: ``<data-dir>/member/wal/*.wal``, ``<data-dir>/member/snap/*.snap``
(raft snapshots) and ``<data-dir>/member/snap/db`` (the backend).

A restart rebuilds raft's in-memory log from the newest snapshot the WAL knows of and
the WAL entries after it; the backend already holds everything up to its consistent
index, so replaying older entries is skipped by the apply loop.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

from petcd.config.members import Member
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import Config, MemoryStorage, RawNode
from petcd.server.force_new_cluster import standalone
from petcd.wal import WAL, Snapshotter, WalSnapshot

__all__ = ["BootstrapError", "Member", "Paths", "RaftSetup", "open_raft", "raft_config"]

log = logging.getLogger("petcd.server")


class BootstrapError(Exception):
    """The data dir cannot be used with these flags; the message says why."""


@dataclass
class RaftSetup:
    node: RawNode
    storage: MemoryStorage
    wal: WAL
    snapshotter: Snapshotter
    member_id: int
    cluster_id: int
    snapshot: raftpb.Snapshot | None
    is_new: bool


@dataclass(frozen=True)
class Paths:
    data_dir: Path
    member_dir: Path
    wal_dir: Path
    snap_dir: Path
    db_path: Path

    @classmethod
    def of(cls, data_dir: str, wal_dir: str = "") -> Paths:
        d = Path(data_dir)
        member = d / "member"
        return cls(d, member, Path(wal_dir) if wal_dir else member / "wal", member / "snap", member / "snap" / "db")


def raft_config(
    member_id: int,
    storage: MemoryStorage,
    applied: int,
    election_ticks: int,
    rand: random.Random,
    pre_vote: bool,
) -> Config:
    return Config(
        id=member_id,
        election_tick=election_ticks,
        heartbeat_tick=1,
        storage=storage,
        applied=applied,
        max_size_per_msg=1 << 20,
        max_inflight_msgs=512,
        max_uncommitted_entries_size=1 << 30,
        check_quorum=True,
        pre_vote=pre_vote,
        rand=rand,
    )


def open_raft(
    paths: Paths,
    member_id: int,
    cluster_id: int,
    initial_members: list[Member],
    initial_cluster_state: str,
    election_ticks: int,
    rand: random.Random,
    *,
    pre_vote: bool,
    unsafe_no_fsync: bool,
    force_new_cluster: bool = False,
) -> RaftSetup:
    """Start raft on a data dir: bootstrap a new member, join an existing cluster (member and
    cluster ids already discovered), or restart from what is on disk."""
    paths.snap_dir.mkdir(parents=True, exist_ok=True)
    snapshotter = Snapshotter(str(paths.snap_dir))
    if not WAL.exists(str(paths.wal_dir)):
        os.makedirs(paths.member_dir, exist_ok=True)
        meta = serverpb.WalMetadata(member_id=member_id, cluster_id=cluster_id).SerializeToString()
        wal = WAL.create(str(paths.wal_dir), meta, unsafe_no_fsync=unsafe_no_fsync)
        storage = MemoryStorage()
        node = RawNode(raft_config(member_id, storage, 0, election_ticks, rand, pre_vote))
        if initial_cluster_state == "existing":
            # the leader sends the log (or a snapshot) from the start: nothing to bootstrap
            return RaftSetup(node, storage, wal, snapshotter, member_id, cluster_id, None, False)
        contexts = {
            m.id: serverpb.ConfChangeContext(member=m.to_record()).SerializeToString() for m in initial_members
        }
        node.bootstrap([m.id for m in initial_members], contexts)
        return RaftSetup(node, storage, wal, snapshotter, member_id, cluster_id, None, True)

    walsnaps = WAL.valid_snapshot_entries(str(paths.wal_dir))
    snap = snapshotter.load_newest_available(walsnaps)
    walsnap = WalSnapshot(0, 0)
    if snap is not None:
        md = snap.metadata
        walsnap = WalSnapshot(md.index, md.term, md.conf_state)
    wal = WAL.open(str(paths.wal_dir), walsnap, unsafe_no_fsync=unsafe_no_fsync)
    meta_bytes, hard_state, entries = wal.read_all()
    wal_meta = serverpb.WalMetadata.FromString(meta_bytes)
    # --force-new-cluster takes the data dir's own ids whatever the flags say (as etcd does), so a
    # backup restarted on another host or port is not refused
    if initial_cluster_state == "new" and cluster_id and wal_meta.cluster_id != cluster_id and not force_new_cluster:
        wal.close()
        raise BootstrapError(
            f"data dir {paths.data_dir} belongs to cluster {wal_meta.cluster_id:x} (member {wal_meta.member_id:x}), "
            f"but these flags describe cluster {cluster_id:x}: check --initial-cluster, "
            "--initial-cluster-token and --data-dir"
        )
    if force_new_cluster:
        alone = standalone(wal_meta.member_id, snap.metadata.conf_state if snap is not None else None,
                           hard_state, entries)
        wal.save(alone.hard_state, alone.appended, True)
        entries, hard_state = alone.entries, alone.hard_state
        log.warning("--force-new-cluster: member %x continues as the only member of cluster %x; "
                    "%d conf changes appended", wal_meta.member_id, wal_meta.cluster_id, len(alone.appended))
    storage = MemoryStorage()
    if snap is not None:
        storage.apply_snapshot(snap)
    storage.set_hard_state(hard_state)
    if entries:
        storage.append(entries)
    applied = snap.metadata.index if snap is not None else 0
    node = RawNode(raft_config(wal_meta.member_id, storage, applied, election_ticks, rand, pre_vote))
    log.info(
        "restarting member %x in cluster %x at commit index %d (%d WAL entries after snapshot %d)",
        wal_meta.member_id,
        wal_meta.cluster_id,
        hard_state.commit,
        len(entries),
        applied,
    )
    return RaftSetup(node, storage, wal, snapshotter, wal_meta.member_id, wal_meta.cluster_id, snap, False)
