"""`petcdutl snapshot restore`: a petcd data dir from an etcd snapshot file, as etcdutl makes an
etcd data dir from one.

Steps, as etcdutl 3.5 takes them:
1. check the flags (this member is in --initial-cluster with its advertised peer URLs) and that
   the data dir is empty and the WAL dir new;
2. check the sha256 trailer (a file whose size is 32 past a multiple of 512 has one; a file
   without one needs --skip-hash-check);
3. copy the bbolt database into a new LMDB backend (<data-dir>/member/snap/db), converting
   etcd's bucket encodings to petcd's, then replace the membership with the new cluster's;
4. optionally (--bump-revision N --mark-compacted, etcd 3.6's flags) raise the revision by N
   above the newest one in the snapshot and mark that revision compacted, so clients that watch
   or read at older revisions are told to start over;
5. write a WAL holding one ConfChangeAddNode entry per member (term 1, indexes 1..N, member ids
   in order), the hard state (term 1, commit N) and a raft snapshot at index N with the members
   as voters; and record index N and term 1 as the backend's consistent index.

A petcd member started on that data dir with matching --name, --initial-cluster and
--initial-cluster-token restarts from the snapshot: the backend already holds index N, so no
entry is replayed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from petcd.backend import AUTH, CONSISTENT_INDEX_KEY, KEY, MEMBERS, MEMBERS_REMOVED, META, TERM_KEY, Backend
from petcd.bbolt import SHA256_SIZE, BoltReader, import_etcd_db
from petcd.bbolt.etcd_layout import petcd_member_key
from petcd.config.cluster_ids import check_bootstrap, compute_cluster_id, compute_member_id
from petcd.config.govalues import GoValueError, new_urls, parse_url_map
from petcd.mvcc.revision import bytes_to_rev, main_of, pack, rev_to_bytes
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.bootstrap import Paths
from petcd.utl.progress import Progress
from petcd.wal import WAL, Snapshotter, WalSnapshot

log = logging.getLogger("petcd.utl")

_U64 = struct.Struct(">Q")
SCHEDULED_COMPACT_KEY = b"scheduledCompactRev"


class RestoreError(Exception):
    """The restore cannot be done; the message is etcdutl's where etcdutl has one."""


@dataclass(frozen=True)
class RestoreConfig:
    snapshot_path: str
    name: str
    data_dir: str
    wal_dir: str
    peer_urls: list[str]
    initial_cluster: str
    initial_cluster_token: str
    skip_hash_check: bool = False
    bump_revision: int = 0
    mark_compacted: bool = False


@dataclass(frozen=True)
class RestoreResult:
    member_id: int
    cluster_id: int
    revision: int
    keys_restored: int


def has_checksum(size: int) -> bool:
    """etcd's rule: a snapshot with a sha256 trailer is 32 bytes past a multiple of 512."""
    return size % 512 == SHA256_SIZE


def verify_snapshot_file(path: str, skip_hash_check: bool) -> None:
    size = os.path.getsize(path)
    if size < SHA256_SIZE:
        raise RestoreError("file size too small")
    with_hash = has_checksum(size)
    if not with_hash and not skip_hash_check:
        raise RestoreError("snapshot missing hash but --skip-hash-check=false")
    if with_hash and not skip_hash_check:
        h = hashlib.sha256()
        shown = Progress("verifying sha256", total=size - SHA256_SIZE)
        with open(path, "rb") as f:
            left = size - SHA256_SIZE
            while left > 0:
                chunk = f.read(min(1 << 20, left))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
                shown.update(size - SHA256_SIZE - left)
            want = f.read(SHA256_SIZE)
        shown.finish()
        got = h.digest()
        if got != want:
            raise RestoreError(f"expected sha256 {_go_bytes(want)}, got {_go_bytes(got)}")


def _go_bytes(b: bytes) -> str:
    return "[" + " ".join(str(x) for x in b) + "]"


def _dir_nonempty(path: str) -> bool:
    try:
        return bool(os.listdir(path))
    except FileNotFoundError:
        return False
    except OSError:
        return True


def restore(cfg: RestoreConfig) -> RestoreResult:
    try:
        peer_urls = new_urls(cfg.peer_urls)
        cluster = parse_url_map(cfg.initial_cluster)
    except GoValueError as e:
        raise RestoreError(str(e)) from None
    try:
        check_bootstrap(cfg.name, peer_urls, cluster)
    except ValueError as e:
        raise RestoreError(str(e)) from None
    members = sorted(
        (
            serverpb.MemberRecord(
                id=compute_member_id(urls, cfg.initial_cluster_token),
                name=name,
                peer_urls=[str(u) for u in urls],
            )
            for name, urls in cluster
        ),
        key=lambda m: m.id,
    )
    cluster_id = compute_cluster_id(m.id for m in members)
    me = next(m for m in members if m.name == cfg.name)

    data_dir = cfg.data_dir or f"{cfg.name}.etcd"
    if os.path.exists(data_dir) and _dir_nonempty(data_dir):
        raise RestoreError(f'data-dir "{data_dir}" not empty or could not be read')
    if cfg.wal_dir and os.path.exists(cfg.wal_dir):
        raise RestoreError(f'wal-dir "{cfg.wal_dir}" exists')
    if not os.path.exists(cfg.snapshot_path):
        raise RestoreError(f"open {cfg.snapshot_path}: no such file or directory")
    verify_snapshot_file(cfg.snapshot_path, cfg.skip_hash_check)

    paths = Paths.of(data_dir, cfg.wal_dir)
    paths.snap_dir.mkdir(parents=True, exist_ok=True)
    index = len(members)
    term = 1
    with BoltReader(cfg.snapshot_path) as db, Backend(str(paths.db_path)) as be:
        shown = Progress("restoring keys")
        written = import_etcd_db(db, be, progress=shown.update)
        shown.finish()
        if be.get(AUTH, b"authEnabled") == b"\x01":
            # the users and roles are kept as etcd stored them, for when petcd enforces them
            log.warning("the snapshot has authentication enabled: its users and roles are restored, "
                        "but this petcd does not enforce authentication")
        # the new cluster's membership replaces the snapshot's (etcd's TrimMembershipFromBackend)
        for bucket in (MEMBERS, MEMBERS_REMOVED):
            for k, _v in be.range(bucket):
                be.delete(bucket, k)
        for m in members:
            be.put(MEMBERS, petcd_member_key(m.id), m.SerializeToString())
        revision = _latest_main(be)
        if cfg.bump_revision and cfg.mark_compacted:
            revision += cfg.bump_revision
            # petcd's store resumes a scheduled compaction past its newest record at start, which
            # leaves it at this revision, compacted; etcd also writes an empty marker record there
            be.put(META, SCHEDULED_COMPACT_KEY, rev_to_bytes(pack(revision)))
        be.put(META, CONSISTENT_INDEX_KEY, _U64.pack(index))
        be.put(META, TERM_KEY, _U64.pack(term))
        be.force_commit()
    _write_wal_and_snapshot(paths, me.id, cluster_id, members, index, term)
    return RestoreResult(me.id, cluster_id, revision, written.get(KEY, 0))


def _latest_main(be: Backend) -> int:
    """The main revision of the newest record (tombstones count), read in batches."""
    last = b""
    start = b""
    with be.read() as tx:
        while True:
            keys = tx.keys(KEY, start, None, 4096)
            if keys:
                last = keys[-1]
            if len(keys) < 4096:
                break
            start = last + b"\x00"
    return main_of(bytes_to_rev(last)) if last else 0


def _write_wal_and_snapshot(
    paths: Paths, member_id: int, cluster_id: int, members: list[serverpb.MemberRecord], index: int, term: int
) -> None:
    meta = serverpb.WalMetadata(member_id=member_id, cluster_id=cluster_id).SerializeToString()
    entries = []
    for i, m in enumerate(members):
        ctx = serverpb.ConfChangeContext(member=m).SerializeToString()
        cc = raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=m.id, context=ctx)
        entries.append(raftpb.Entry(type=raftpb.EntryConfChange, term=term, index=i + 1, data=cc.SerializeToString()))
    hard_state = raftpb.HardState(term=term, vote=members[0].id, commit=index)
    conf_state = raftpb.ConfState(voters=[m.id for m in members])
    data = serverpb.SnapshotData(cluster_id=cluster_id, members=members).SerializeToString()
    snap = raftpb.Snapshot(
        data=data, metadata=raftpb.SnapshotMetadata(index=index, term=term, conf_state=conf_state)
    )
    os.makedirs(Path(paths.wal_dir).parent, exist_ok=True)
    wal = WAL.create(str(paths.wal_dir), meta)
    try:
        wal.save(hard_state, entries)
        Snapshotter(str(paths.snap_dir)).save_snap(snap)
        wal.save_snapshot(WalSnapshot(index, term, conf_state))
    finally:
        wal.close()
