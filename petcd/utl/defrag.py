"""`petcdutl defrag --data-dir DIR`: etcdutl 3.5's offline defrag, for petcd's LMDB backend.

The backend file (<data-dir>/member/snap/db) is rewritten by LMDB's compacting copy and the copy
atomically replaces it (Backend.defrag: copy to a temporary file, fsync, rename, fsync the
directory), so a crash at any point leaves one whole file at the path.

Only a data dir no process uses may be defragmented this way. etcdutl waits for bbolt's file
lock; petcdutl refuses at once instead, naming what holds the dir, because an operator who ran
the offline tool on a live member's dir wants to hear so rather than a hang:
- the WAL dir's LOCK (flock, taken by a member before it opens the backend) is taken and held
  for the whole defrag, so a member started meanwhile stops with "locked by another process";
- LMDB's lock file (<db>-lock): every process with the environment open holds a shared record
  lock on its first byte; one that cannot be write-locked means a process (a member with its WAL
  elsewhere, or a reader) has the file open.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass

import lmdb

from petcd.backend import Backend
from petcd.server.bootstrap import Paths
from petcd.utl.printer import human_bytes
from petcd.utl.progress import Progress
from petcd.wal import WALError
from petcd.wal.fileutil import DirLock

log = logging.getLogger("petcd.utl")

LMDB_MAGIC = 0xBEEFC0DE  # a meta page's first field, after the 16-byte page header
BBOLT_MAGIC = 0xED0CDAED

# struct flock on Linux: l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t), padding
_FLOCK = struct.Struct("hhqqi4x")


class DefragError(Exception):
    """The data dir cannot be defragmented (the text says why)."""


@dataclass(frozen=True)
class DefragResult:
    db_path: str
    size_before: int
    in_use_before: int
    size_after: int
    in_use_after: int
    took: float


def lmdb_holder(db_path: str) -> int | None:
    """The pid of a process that has the LMDB file open (holds its lock file's record lock), or
    None when no process has; 0 when one has but the kernel does not say which."""
    lock_path = db_path + "-lock"
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
        l_type, _whence, _start, _len, pid = _FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    if l_type == fcntl.F_UNLCK:
        return None
    return int(pid)


def _fields(**kw: object) -> str:
    """etcd's log fields, as zap's console encoder prints them."""
    return json.dumps(kw)


def defrag_data_dir(data_dir: str) -> DefragResult:
    paths = Paths.of(data_dir)
    db = str(paths.db_path)
    if not os.path.exists(db):
        raise DefragError(f"open {db}: no such file or directory")
    check_magic(db, "defragment it with etcdutl")
    wal_lock: DirLock | None = None
    if paths.wal_dir.is_dir():
        try:
            wal_lock = DirLock(str(paths.wal_dir))
        except WALError:
            raise DefragError(
                f"a member is running on {data_dir} (its WAL lock {paths.wal_dir / 'LOCK'} is held); "
                "to defragment a running member use `etcdctl defrag` against its endpoint"
            ) from None
    try:
        holder = lmdb_holder(db)
        if holder is not None:
            who = f"process {holder}" if holder else "another process"
            raise DefragError(
                f"{db} is open in {who}; stop the member (or use `etcdctl defrag` against it) first"
            )
        return _defrag(db)
    finally:
        if wal_lock is not None:
            wal_lock.release()


def check_magic(db: str, advice: str) -> None:
    """Refuse before LMDB touches (or makes a lock file beside) what is not an LMDB file; `advice`
    says what to do with an etcd file instead."""
    with open(db, "rb") as f:
        head = f.read(20)
    magic = int.from_bytes(head[16:20], "little") if len(head) == 20 else 0
    if magic == BBOLT_MAGIC:
        raise DefragError(f"{db} is an etcd (bbolt) database, not petcd's; {advice}")
    if magic != LMDB_MAGIC:
        raise DefragError(f"{db} is not a petcd (LMDB) database")


def _watch(path: str, shown: Progress, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        try:
            shown.update(os.path.getsize(path))
        except FileNotFoundError:
            pass


def _defrag(db: str) -> DefragResult:
    try:
        be = Backend(db)
    except lmdb.Error as e:
        raise DefragError(f"{db} is not a petcd (LMDB) database: {e}") from None
    with be:
        size, in_use = be.size(), be.size_in_use()
        log.info("defragmenting\t%s", _fields(**{
            "path": db,
            "current-db-size-bytes": size,
            "current-db-size": human_bytes(size),
            "current-db-size-in-use-bytes": in_use,
            "current-db-size-in-use": human_bytes(in_use),
        }))
        start = time.monotonic()
        shown = Progress("defragmenting", total=in_use)
        stop = threading.Event()
        # the copy is made by a child process (Backend.defrag) into <db>.defrag: its size is
        # the progress
        watcher = threading.Thread(target=_watch, args=(db + ".defrag", shown, stop), daemon=True)
        if shown.enabled:
            watcher.start()
        try:
            be.defrag()
        finally:
            stop.set()
            if shown.enabled:
                watcher.join()
        took = time.monotonic() - start
        size2, in_use2 = be.size(), be.size_in_use()
        shown.update(size2)
        shown.finish()
    log.info("finished defragmenting directory\t%s", _fields(**{
        "path": db,
        "current-db-size-bytes-diff": size2 - size,
        "current-db-size-bytes": size2,
        "current-db-size": human_bytes(size2),
        "current-db-size-in-use-bytes-diff": in_use2 - in_use,
        "current-db-size-in-use-bytes": in_use2,
        "current-db-size-in-use": human_bytes(in_use2),
        "took": round(took, 9),
    }))
    return DefragResult(db, size, in_use, size2, in_use2, took)
