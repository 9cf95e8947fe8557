"""`petcdutl backup`: etcdutl 3.5's legacy offline backup of a data dir, for petcd's layout.

What etcdutl 3.5.1 makes, and so what this makes (<dir>/member/{snap,wal} as in the source):
- the backend (<backup-dir>/member/snap/db): a consistent copy of the source's (here LMDB's
  compacting copy), its membership replaced by one placeholder member ("etcdctl-v2-backup", peer
  URL http://use-flag--force-new-cluster:2080, a new member id and cluster id made like etcd's
  request ids) and its cluster version dropped; the consistent index is kept. With
  --with-v3=false the backend is a new one holding only that membership and, as consistent
  index, the WAL's commit index and term.
- the newest raft snapshot, with the placeholder as its only voter and member;
- the WAL: the source's metadata (the old member and cluster ids) and hard state, and every
  entry after the snapshot at its index and term, but with conf changes and member attribute
  updates (with --with-v3=false also every v3 request) replaced by empty entries, so the
  consistent index still points at the right entry.

The backup cannot elect itself as it is (raft's configuration holds no voter it knows): it is
meant to be started with --force-new-cluster, which adds the old member to its own
configuration (peer URL http://localhost:2380) and removes the placeholder; the member then
serves the same keys at the same revision. etcd 3.5 reads the membership from its v2 store,
where the placeholder exists only if a raft snapshot carried it; petcd reads it from the
backend, so the placeholder goes into the backend only when there is a snapshot, and the member
list after the forced start is the same as etcd's: the old member alone.

Refusals come before anything is written (etcdutl creates the target dir first): a data dir a
member has open (WAL lock or LMDB lock held; etcdutl waits a second for bbolt's lock, then
gives up), a target snap dir that is not empty (etcdutl's text), a target WAL that exists.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lmdb

from petcd.backend import CLUSTER, CONSISTENT_INDEX_KEY, MEMBERS, MEMBERS_REMOVED, META, TERM_KEY, Backend
from petcd.bbolt.etcd_layout import petcd_member_key
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.bootstrap import Paths
from petcd.server.idgen import IdGenerator
from petcd.utl.defrag import DefragError, check_magic, lmdb_holder
from petcd.utl.progress import Progress
from petcd.wal import WAL, SnapshotCorruptError, Snapshotter, WALError, WalSnapshot
from petcd.wal.fileutil import DirLock
from petcd.wal.reader import read_log
from petcd.wal.segments import list_segments, search_index

log = logging.getLogger("petcd.utl")

PLACEHOLDER_NAME = "etcdctl-v2-backup"
PLACEHOLDER_PEER_URL = "http://use-flag--force-new-cluster:2080"
_U64 = struct.Struct(">Q")
_WAL_BATCH = 4096  # entries per WAL write (one fsync at the end)


class BackupError(Exception):
    """The backup cannot be made; the message is etcdutl's where etcdutl has one."""


@dataclass(frozen=True)
class BackupConfig:
    data_dir: str
    backup_dir: str
    wal_dir: str = ""
    backup_wal_dir: str = ""
    with_v3: bool = True


@dataclass(frozen=True)
class BackupResult:
    member_id: int  # the source's, kept in the WAL metadata
    cluster_id: int
    placeholder_id: int
    placeholder_cluster_id: int
    snapshot_index: int  # 0 without a raft snapshot
    commit: int
    term: int
    entries: int  # WAL entries after the snapshot
    blanked: int  # of which replaced by empty entries
    db_size: int


@dataclass(frozen=True)
class _Desired:
    member: serverpb.MemberRecord
    cluster_id: int

    @property
    def conf_state(self) -> raftpb.ConfState:
        return raftpb.ConfState(voters=[self.member.id])


def _desired(now_ms: int) -> _Desired:
    # etcd takes two ids from a generator with member id 0 started now: the member's, then the cluster's
    gen = IdGenerator(0, now_ms)
    member_id = gen.next()
    cluster_id = gen.next()
    member = serverpb.MemberRecord(id=member_id, name=PLACEHOLDER_NAME, peer_urls=[PLACEHOLDER_PEER_URL])
    return _Desired(member, cluster_id)


def _go_strings(names: list[str]) -> str:
    """Go's %q of a []string."""
    return "[" + " ".join('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names) + "]"


def _check_target(dst: Paths) -> None:
    snap = dst.snap_dir
    if snap.exists():
        if not snap.is_dir():
            raise BackupError(f"failed creating backup snapshot dir {snap}: not a directory")
        names = sorted(os.listdir(snap))
        if names:
            raise BackupError(f'failed creating backup snapshot dir: expected "{snap}" to be empty, got {_go_strings(names)}')
    if WAL.exists(dst.wal_dir):
        raise BackupError(f"wal.Create failed: {dst.wal_dir} already holds a WAL (file already exists)")


def _check_source(src: Paths, with_v3: bool) -> None:
    if not src.snap_dir.is_dir():
        raise BackupError(f"open {src.snap_dir}: no such file or directory (no member data in {src.data_dir})")
    if not src.wal_dir.is_dir():
        raise BackupError(f"wal.OpenForRead failed: open {src.wal_dir}: no such file or directory")
    if not list_segments(str(src.wal_dir)):
        raise BackupError(f"wal.OpenForRead failed: wal: file not found (no WAL segments in {src.wal_dir})")
    db = str(src.db_path)
    if not os.path.exists(db):
        if with_v3:
            raise BackupError(f"bolt.Open FAILED: open {db}: no such file or directory")
        return
    try:  # also without v3: an etcd data dir's WAL is not petcd's either
        check_magic(db, "back it up with etcdutl")
    except DefragError as e:
        raise BackupError(str(e)) from None


@contextmanager
def _source_locked(src: Paths, with_v3: bool) -> Iterator[None]:
    """Hold the source WAL's lock for the whole backup (a member started meanwhile stops with
    "locked by another process") and refuse a backend file some process has open."""
    try:
        lock = DirLock(str(src.wal_dir))
    except WALError:
        raise BackupError(
            f"a member is running on {src.data_dir} (its WAL lock {src.wal_dir / 'LOCK'} is held); "
            "stop it first, or back it up online with `etcdctl snapshot save`"
        ) from None
    try:
        if with_v3:
            holder = lmdb_holder(str(src.db_path))
            if holder is not None:
                who = f"process {holder}" if holder else "another process"
                raise BackupError(
                    f"{src.db_path} is open in {who}; stop the member (or use `etcdctl snapshot save`) first"
                )
        yield
    finally:
        lock.release()


def _newest_snapshot(snap_dir: Path) -> raftpb.Snapshot | None:
    """The newest raft snapshot that reads back; a damaged one is skipped (and left as it is)."""
    ss = Snapshotter(str(snap_dir))
    for name in ss.snap_names():
        try:
            return ss.read(name)
        except (SnapshotCorruptError, OSError) as e:
            log.warning("skipping raft snapshot %s: %s", name, e)
    return None


def _blank(ent: raftpb.Entry) -> raftpb.Entry:
    # an empty normal entry is what a new leader appends: it changes nothing when applied
    return raftpb.Entry(term=ent.term, index=ent.index, type=raftpb.EntryNormal)


def _translate(entries: list[raftpb.Entry], with_v3: bool) -> tuple[list[raftpb.Entry], int]:
    out: list[raftpb.Entry] = []
    blanked = v3_blanked = 0
    for ent in entries:
        if ent.type == raftpb.EntryConfChange:
            log.info("ignoring EntryConfChange raft entry (index %d)", ent.index)
            out.append(_blank(ent))
            blanked += 1
            continue
        if not ent.data:
            out.append(ent)
            continue
        try:
            req = serverpb.InternalRequest.FromString(ent.data)
        except Exception as e:  # a record that checks out but does not decode was written wrong
            raise BackupError(f"WAL entry {ent.index} (term {ent.term}) does not decode: {e}") from None
        if req.WhichOneof("request") == "member_attr_set":
            log.info("ignoring member attribute update (index %d, member %x)", ent.index, req.member_attr_set.member_id)
            out.append(_blank(ent))
            blanked += 1
        elif not with_v3 and req.HasField("header"):
            out.append(_blank(ent))
            v3_blanked += 1
        else:
            out.append(ent)
    if v3_blanked:
        log.info("ignoring %d v3 raft entries (--with-v3=false)", v3_blanked)
    return out, blanked + v3_blanked


def _in_use(env: lmdb.Environment) -> int:
    return (int(env.info()["last_pgno"]) + 1) * int(env.stat()["psize"])


def _watch(path: str, shown: Progress, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        try:
            shown.update(os.path.getsize(path))
        except FileNotFoundError:
            pass


def _copy_backend(src_db: str, dst_db: str) -> None:
    """LMDB's compacting copy: one read transaction, so the copy is one consistent state."""
    env = lmdb.open(src_db, subdir=False, readonly=True, lock=True, max_dbs=64, map_size=0)
    try:
        shown = Progress("copying backend", total=_in_use(env))
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(dst_db, shown, stop), daemon=True)
        if shown.enabled:
            watcher.start()
        try:
            env.copy(dst_db, compact=True)
        finally:
            stop.set()
            if shown.enabled:
                watcher.join()
        size = os.path.getsize(dst_db)
        shown.total = size  # the pages in use were an estimate: the copy leaves out free ones
        shown.update(size)
        shown.finish()
    finally:
        env.close()


def _save_db(dst_db: str, src_db: str, desired: _Desired, with_snapshot: bool, state: raftpb.HardState,
             with_v3: bool) -> int:
    if with_v3:
        _copy_backend(src_db, dst_db)
    with Backend(dst_db) as be:
        log.info("trimming membership information from the backend")
        for bucket in (MEMBERS, MEMBERS_REMOVED, CLUSTER):
            for k, _v in list(be.range(bucket)):
                be.delete(bucket, k)
        if with_snapshot:  # see the module docstring: only then is the placeholder a member
            be.put(MEMBERS, petcd_member_key(desired.member.id), desired.member.SerializeToString())
        if not with_v3:
            # blanked entries need no replay: the new backend counts as having applied them all
            be.put(META, CONSISTENT_INDEX_KEY, _U64.pack(state.commit))
            be.put(META, TERM_KEY, _U64.pack(state.term))
        be.force_commit()
        return be.size()


def _write_wal(wal_dir: Path, metadata: bytes, state: raftpb.HardState, entries: list[raftpb.Entry],
               walsnap: WalSnapshot) -> None:
    os.makedirs(wal_dir.parent, exist_ok=True)
    wal = WAL.create(str(wal_dir), metadata)
    try:
        shown = Progress("writing WAL", items_name="entries")
        done = 0
        for i in range(0, len(entries), _WAL_BATCH):
            batch = entries[i : i + _WAL_BATCH]
            wal.save(None, batch, sync=False)
            done += sum(e.ByteSize() for e in batch)
            shown.update(done, i + len(batch))
        wal.save(state, [], sync=True)
        wal.save_snapshot(walsnap)
        shown.finish()
    finally:
        wal.close()


def _topmost_missing(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (what to remove on failure)."""
    top: Path | None = None
    p = path.absolute()
    while not p.exists():
        top = p
        if p.parent == p:
            break
        p = p.parent
    return top


def backup(cfg: BackupConfig, now_ms: int) -> BackupResult:
    """Back up cfg.data_dir into cfg.backup_dir (see the module docstring); `now_ms` seeds the
    placeholder's ids as etcd's clock does."""
    if not cfg.data_dir or not cfg.backup_dir:
        raise BackupError("--data-dir and --backup-dir must not be empty")
    src = Paths.of(cfg.data_dir, cfg.wal_dir)
    dst = Paths.of(cfg.backup_dir, cfg.backup_wal_dir)
    _check_source(src, cfg.with_v3)
    _check_target(dst)
    with _source_locked(src, cfg.with_v3):
        made = [p for p in {_topmost_missing(dst.snap_dir), _topmost_missing(dst.wal_dir)} if p is not None]
        snap_dir_was_there = dst.snap_dir.is_dir()  # and empty: _check_target saw to that
        try:
            return _backup(cfg, src, dst, now_ms)
        except BaseException:
            # a half-made backup is worse than none; only what this run created goes
            for p in made:
                shutil.rmtree(p, ignore_errors=True)
            if snap_dir_was_there:
                for name in os.listdir(dst.snap_dir):
                    (dst.snap_dir / name).unlink(missing_ok=True)
            raise


def _backup(cfg: BackupConfig, src: Paths, dst: Paths, now_ms: int) -> BackupResult:
    dst.snap_dir.mkdir(parents=True, exist_ok=True)
    desired = _desired(now_ms)
    snap = _newest_snapshot(src.snap_dir)
    walsnap = WalSnapshot()
    if snap is not None:
        md = snap.metadata
        walsnap = WalSnapshot(md.index, md.term, desired.conf_state)
        copy = raftpb.Snapshot()
        copy.CopyFrom(snap)
        copy.metadata.conf_state.CopyFrom(desired.conf_state)
        copy.data = serverpb.SnapshotData(cluster_id=desired.cluster_id, members=[desired.member]).SerializeToString()
        Snapshotter(str(dst.snap_dir)).save_snap(copy)

    segs = list_segments(str(src.wal_dir))
    pos = search_index(segs, walsnap.index)
    if pos < 0:
        raise BackupError(f"wal.OpenForRead failed: no WAL segment in {src.wal_dir} reaches back to "
                          f"snapshot index {walsnap.index}")
    contents = read_log(segs[pos:], walsnap)
    if not walsnap.is_zero and not contents.snap_found:
        log.warning("failed to find the match snapshot record (index %d, term %d) in %s; the backup's WAL "
                    "gets one", walsnap.index, walsnap.term, src.wal_dir)
    if contents.metadata is None:
        raise BackupError(f"unexpected error while reading WAL: no metadata record in {src.wal_dir}")
    meta = serverpb.WalMetadata.FromString(contents.metadata)
    state = contents.state
    entries, blanked = _translate(contents.entries, cfg.with_v3)

    db_size = _save_db(str(dst.db_path), str(src.db_path), desired, snap is not None, state, cfg.with_v3)
    _write_wal(dst.wal_dir, contents.metadata, state, entries, walsnap)
    log.info(
        "backed up %s to %s: member %x of cluster %x, commit index %d, %d WAL entries (%d made empty); "
        "start it with --force-new-cluster",
        cfg.data_dir, cfg.backup_dir, meta.member_id, meta.cluster_id, state.commit, len(entries), blanked,
    )
    return BackupResult(
        member_id=meta.member_id,
        cluster_id=meta.cluster_id,
        placeholder_id=desired.member.id,
        placeholder_cluster_id=desired.cluster_id,
        snapshot_index=walsnap.index,
        commit=state.commit,
        term=state.term,
        entries=len(entries),
        blanked=blanked,
        db_size=db_size,
    )
