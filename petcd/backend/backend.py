"""LMDB backend: one file, one batched write transaction, readers that never block.

How it works
------------
* One LMDB environment in a single file (``subdir=False``) with a named database per etcd bucket.
* Writes go into one long-lived LMDB write transaction, the *batch*. The thread that opens the batch
  owns it: LMDB's writer mutex has to be released by the thread that took it, so only the owner can
  write to, read through or commit the batch.
* The batch is committed only at points the owner chooses, never inside a put: ``commit_if_due()``
  (called by the owner between applied raft entries and on a timer) commits once ``batch_interval``
  seconds have passed since the batch opened or ``batch_limit`` writes are pending, and
  ``force_commit()`` commits now. Committing only between entries keeps every entry's writes and the
  consistent index that covers them in one LMDB transaction, which makes WAL replay idempotent.
* Reads on the owner thread while a batch is open go through the batch, so they see pending writes.
  Every other read (other threads, or no batch open) uses a read transaction on committed state.
* Exclusive work (defrag's file swap, growing the map) needs no batch open. From a non-owner
  thread it asks the owner to commit at its next ``commit_if_due()`` and waits. While defrag copies
  the file, reads go on against the old file and opening a new batch waits (``write_blocked``).
* The map grows on demand: a full map aborts the batch, the map doubles (up to ``max_map_size``)
  and the batch's logged operations are replayed, so nothing pending is lost.
* A commit that fails (a full or failing disk: LMDB aborts the transaction) loses the batch. The
  backend then refuses every further write and commit (``CommitFailedError``): a later batch
  committed on top of the lost one would carry a consistent index past entries the file never got,
  and WAL replay would skip them. etcd's backend exits the process at that point.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import crc32c
import lmdb

from petcd.backend.buckets import ALL_BUCKETS, DEFAULT_HASH_IGNORES

DEFAULT_MAP_SIZE = 1 << 30
DEFAULT_MAX_MAP_SIZE = 1 << 40

_PUT = 0
_PUT_APPEND = 1
_DELETE = 2


# Run by a child process (see Backend._copy): opens the database as a read-only LMDB reader and
# writes a compacting copy. A map grown by the parent since the child opened it is adopted.
_COPY_SCRIPT = """
import os
import sys
import lmdb
src, dest = sys.argv[1], sys.argv[2]
env = lmdb.open(src, subdir=False, readonly=True, lock=True, max_dbs=64, map_size=0)
for _ in range(100):
    try:
        env.copy(dest, compact=True)
        break
    except lmdb.MapResizedError:
        if os.path.exists(dest):
            os.unlink(dest)
        env.set_mapsize(0)
env.close()
"""


class BackendError(Exception):
    """A backend failure that is not LMDB's own error (closed, misuse, map limit reached)."""


class BackendFullError(BackendError):
    """The database reached max_map_size; the write that hit it was not applied."""


class CommitFailedError(BackendError):
    """An earlier batch commit failed (a full or failing disk): its writes are lost from the file,
    so nothing after them may be written or committed either (the member must stop and replay
    its WAL on restart)."""


class ReadTx:
    """Reads through one LMDB transaction: the owner's batch, or a read transaction."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: lmdb.Transaction[bytes], dbs: dict[bytes, lmdb._Database]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._dbs[bucket])

    def range(
        self, bucket: bytes, start: bytes = b"", end: bytes | None = None, limit: int = 0
    ) -> list[tuple[bytes, bytes]]:
        """Pairs with start <= key < end (no upper bound if end is None), in key order."""
        out: list[tuple[bytes, bytes]] = []
        cur = self._txn.cursor(db=self._dbs[bucket])
        if not cur.set_range(start):
            return out
        for k, v in cur.iternext():
            if end is not None and k >= end:
                break
            out.append((k, v))
            if limit and len(out) >= limit:
                break
        return out

    def keys(
        self, bucket: bytes, start: bytes = b"", end: bytes | None = None, limit: int = 0
    ) -> list[bytes]:
        out: list[bytes] = []
        cur = self._txn.cursor(db=self._dbs[bucket])
        if not cur.set_range(start):
            return out
        for k in cur.iternext(keys=True, values=False):
            if end is not None and k >= end:
                break
            out.append(k)
            if limit and len(out) >= limit:
                break
        return out

    def count(self, bucket: bytes) -> int:
        return int(self._txn.stat(self._dbs[bucket])["entries"])


class Backend:
    """etcd's backend on LMDB. See the module docstring for the threading rules."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        map_size: int = DEFAULT_MAP_SIZE,
        batch_interval: float = 0.1,
        batch_limit: int = 10000,
        clock: Callable[[], float] = time.monotonic,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        unsafe_no_fsync: bool = False,
    ) -> None:
        self._path = os.fspath(path)
        # --unsafe-no-fsync: commits never fsync (a crash may lose or corrupt the file)
        self._fsync = not unsafe_no_fsync
        self._batch_interval = batch_interval
        self._batch_limit = batch_limit
        self._clock = clock
        self._max_map_size = max(max_map_size, map_size)
        self._cond = threading.Condition(threading.Lock())
        self._wtxn: lmdb.Transaction[bytes] | None = None
        self._owner: int | None = None
        self._batch_start = 0.0
        self._pending = 0
        # Every write of the open batch, so it can be replayed after growing a full map.
        self._ops: list[tuple[int, bytes, bytes, bytes]] = []
        self._commit_requested = False
        self._exclusive_waiters = 0
        self._writes_blocked = False
        self._swapping = False
        self._readers = 0
        # other processes that have the file open (external_reader); see defrag
        self._external = 0
        self._swap_pending = False
        self._closed = False
        # why a batch commit failed, once one has: from then on the backend takes no writes
        self._commit_failure = ""
        self._hooks: list[Callable[[], None]] = []
        # called (from any thread) when write_blocked may have ended or a commit was requested
        self._state_listeners: list[Callable[[], None]] = []
        self.commits = 0
        parent = os.path.dirname(self._path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._env, self._dbs = self._open_env(map_size)

    # -- environment ---------------------------------------------------------------------------

    def _open_env(
        self, map_size: int, reopen: bool = False
    ) -> tuple[lmdb.Environment, dict[bytes, lmdb._Database]]:
        # sync=True, metasync=False (MDB_NOMETASYNC): each commit fsyncs its data pages but writes
        # the meta page without an fsync; the next commit's fsync (or env.sync) flushes it. A
        # machine crash can therefore lose at most the last committed batch, never corrupt the
        # file (the meta page never reaches the disk before the pages it points to, which plain
        # sync=False cannot promise). Losing that batch is safe because the WAL holds every
        # acknowledged entry and the consistent index committed with the data tells the server
        # where replay starts. It costs one fsync per batch (measured ~0.2 ms here), not per put.
        env = lmdb.open(
            self._path,
            map_size=map_size,
            subdir=False,
            max_dbs=len(ALL_BUCKETS) + 6,
            metasync=False,
            sync=self._fsync,
            lock=True,
        )
        # Handles opened in a read-only txn do not outlive it (using them later fails with
        # EINVAL). Reopening after defrag the buckets exist, and open_db(create=False) with no
        # txn opens them without a write txn, so the swap pays for no commit and fsync.
        dbs = {name: env.open_db(name, create=not reopen) for name in ALL_BUCKETS}
        return env, dbs

    @property
    def path(self) -> str:
        return self._path

    @property
    def map_size(self) -> int:
        return int(self._env.info()["map_size"])

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("backend: closed")

    def _check_writable(self) -> None:
        if self._commit_failure:
            raise CommitFailedError(f"backend: a batch commit failed ({self._commit_failure}); no more writes")

    def listen_write_state(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (on whichever thread makes the change, so it must only hand the news
        to its own thread) whenever ``write_blocked`` may have ended or another thread asks the
        owner for a commit. Returns the function that removes it."""
        self._state_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._state_listeners.remove(listener)

        return remove

    def _tell_listeners(self) -> None:
        for listener in list(self._state_listeners):
            listener()

    def add_commit_hook(self, hook: Callable[[], None]) -> None:
        """hook() runs on the owner thread just before each batch commit and may write (the MVCC
        store saves its consistent index this way, in the same LMDB transaction as the data)."""
        self._hooks.append(hook)

    # -- the batch -----------------------------------------------------------------------------

    def _batch(self) -> lmdb.Transaction[bytes]:
        me = threading.get_ident()
        wtxn = self._wtxn
        if wtxn is not None and self._owner == me:
            return wtxn
        with self._cond:
            if self._wtxn is not None:
                raise BackendError("backend: the open batch belongs to another thread")
            while self._exclusive_waiters or self._writes_blocked or self._swapping:
                self._cond.wait()
            self._check_open()
            # the writes of the failed batch are gone: a later batch committed on top of them
            # would record a consistent index past entries the file does not hold
            self._check_writable()
            wtxn = self._env.begin(write=True)
            self._wtxn = wtxn
            self._owner = me
            self._batch_start = self._clock()
            self._pending = 0
            return wtxn

    def _do(self, txn: lmdb.Transaction[bytes], op: int, bucket: bytes, key: bytes, value: bytes) -> bool:
        db = self._dbs[bucket]
        if op == _DELETE:
            return txn.delete(key, db=db)
        if op == _PUT_APPEND:
            # MDB_APPEND refuses (returns False) a key that is not past the last one; fall back to
            # an ordinary put so callers can use append for keys that only almost always grow.
            if txn.put(key, value, db=db, append=True):
                return True
        return txn.put(key, value, db=db)

    def _write(self, op: int, bucket: bytes, key: bytes, value: bytes) -> bool:
        txn = self._batch()
        self._ops.append((op, bucket, key, value))
        self._pending += 1
        while True:
            try:
                return self._do(txn, op, bucket, key, value)
            except lmdb.MapFullError:
                txn = self._grow_and_replay(last_op_applies=False)

    def put(self, bucket: bytes, key: bytes, value: bytes, append: bool = False) -> None:
        """Write key in bucket. append=True: LMDB append mode, for keys past every existing key
        (revision keys); pages fill completely instead of splitting in half."""
        self._write(_PUT_APPEND if append else _PUT, bucket, key, value)

    def delete(self, bucket: bytes, key: bytes) -> bool:
        return self._write(_DELETE, bucket, key, b"")

    def _grow_and_replay(self, last_op_applies: bool) -> lmdb.Transaction[bytes]:
        """The batch hit a full map: abort it, grow the map and replay the logged writes (the
        last one only if last_op_applies; otherwise the caller retries it).

        The map doubles up to max_map_size. A write that needs more than that is refused with
        BackendFullError (the batch keeps every earlier write); the map still grows past the limit
        by what replaying and committing the batch need, since refusing those would lose writes
        already accepted. The server's quota keeps the database far below the limit."""
        refuse = False
        while True:
            assert self._wtxn is not None
            # The aborted txn stays in _wtxn until replaced: a batch is still open as far as
            # other threads are concerned, so defrag cannot slip in while this waits for readers.
            self._wtxn.abort()
            with self._cond:
                self._swapping = True
                try:
                    while self._readers:
                        self._cond.wait()
                    current = int(self._env.info()["map_size"])
                    if current < self._max_map_size:
                        grown = min(current * 2, self._max_map_size)
                    else:
                        refuse = refuse or not last_op_applies
                        grown = current + max(current // 16, 1 << 20)
                    self._env.set_mapsize(grown)
                    txn = self._env.begin(write=True)
                    self._wtxn = txn
                    self._owner = threading.get_ident()
                finally:
                    self._swapping = False
                    self._cond.notify_all()
            if refuse and not last_op_applies:
                self._ops.pop()
                self._pending -= 1
                last_op_applies = True
            ops = self._ops if last_op_applies else self._ops[:-1]
            try:
                for op, bucket, key, value in ops:
                    self._do(txn, op, bucket, key, value)
            except lmdb.MapFullError:
                continue
            if refuse:
                raise BackendFullError(
                    f"backend: database reached its map size limit ({self._max_map_size} bytes)"
                )
            return txn

    def _commit(self) -> None:
        """Commit the batch (owner thread only)."""
        if self._wtxn is None:
            return
        for hook in self._hooks:
            hook()
        while True:
            txn = self._wtxn
            assert txn is not None
            try:
                txn.commit()
                break
            except lmdb.MapFullError:
                self._grow_and_replay(last_op_applies=True)
            except lmdb.Error as exc:
                # LMDB aborted the transaction (ENOSPC, EIO): the batch is gone (its entries are
                # still in the WAL), so close() must not try to commit it again, and no later
                # batch may be committed after it
                self._commit_failure = str(exc) or type(exc).__name__
                self._end_batch(committed=False)
                raise
        self._end_batch(committed=True)

    def _end_batch(self, committed: bool) -> None:
        with self._cond:
            self._wtxn = None
            self._owner = None
            self._pending = 0
            self._ops = []
            self._commit_requested = False
            if committed:
                self.commits += 1
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Writes in the open batch."""
        return self._pending

    @property
    def write_blocked(self) -> bool:
        """True while an exclusive operation (defrag) keeps new batches from opening: a write
        that needs a new batch would block its thread until it ends."""
        return self._writes_blocked or self._exclusive_waiters > 0

    def commit_if_due(self) -> bool:
        """Owner thread, between applied entries and on a timer: commit the batch if it is older
        than batch_interval, holds batch_limit writes, or another thread asked for a commit.
        Raises CommitFailedError once a commit has failed (so a periodic caller learns of it)."""
        self._check_writable()
        if self._wtxn is None or self._owner != threading.get_ident():
            return False
        if (
            self._commit_requested
            or self._pending >= self._batch_limit
            or self._clock() - self._batch_start >= self._batch_interval
        ):
            self._commit()
            return True
        return False

    def force_commit(self) -> None:
        """Commit the batch now and flush it to disk. On a thread that does not own the open batch
        this waits until the owner commits at its next commit_if_due()."""
        self._check_writable()
        me = threading.get_ident()
        if self._wtxn is not None and self._owner == me:
            self._commit()
        else:
            with self._cond:
                if self._wtxn is not None and self._owner != me:
                    seen = self.commits
                    self._commit_requested = True
                    self._tell_listeners()
                    while self.commits == seen and not self._closed and not self._commit_failure:
                        self._cond.wait()
                    self._check_writable()
        if self._fsync:
            with self._reading():
                self._env.sync(True)

    # -- reads ---------------------------------------------------------------------------------

    def _reader_enter(self) -> lmdb.Environment:
        """Register a reader, so the environment is not closed or remapped under it."""
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._check_open()
            self._readers += 1
            return self._env

    def _reader_exit(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers and self._swapping:
                self._cond.notify_all()  # a swap, map growth or close waits for the last reader

    @contextmanager
    def _reading(self) -> Iterator[lmdb.Environment]:
        env = self._reader_enter()
        try:
            yield env
        finally:
            self._reader_exit()

    @contextmanager
    def external_reader(self) -> Iterator[str]:
        """Around a child process that opens this file itself (yields its path). LMDB keeps its
        lock file's state while any process has the environment open, so a file swapped in by
        defrag while another process holds the old one would be reopened with the old file's
        transaction state (and read through the wrong meta page). Defrag therefore waits for
        these to end before it swaps, and new ones wait while a swap is due."""
        with self._cond:
            while self._swapping or self._swap_pending:
                self._cond.wait()
            self._check_open()
            self._external += 1
        try:
            yield self._path
        finally:
            with self._cond:
                self._external -= 1
                self._cond.notify_all()

    @contextmanager
    def read(self) -> Iterator[ReadTx]:
        """A consistent view for several reads: through the batch on its owner thread (pending
        writes visible), otherwise a read transaction on committed state. Do not write to the
        backend inside the block."""
        wtxn = self._wtxn
        if wtxn is not None and self._owner == threading.get_ident():
            yield ReadTx(wtxn, self._dbs)
            return
        env = self._reader_enter()
        try:
            txn = env.begin()
            try:
                yield ReadTx(txn, self._dbs)
            finally:
                txn.abort()
        finally:
            self._reader_exit()

    def get_many(self, bucket: bytes, keys: Iterable[bytes]) -> list[bytes | None]:
        """The values of keys (None where missing) from one consistent view, as read() gives;
        the hot path of MVCC reads, so it avoids the context-manager machinery."""
        wtxn = self._wtxn
        if wtxn is not None and self._owner == threading.get_ident():
            get = wtxn.get
            db = self._dbs[bucket]
            return [get(k, db=db) for k in keys]
        env = self._reader_enter()
        try:
            # looked up only now: a defrag swap that _reader_enter waited for replaces the handles
            db = self._dbs[bucket]
            txn = env.begin()
            try:
                get = txn.get
                return [get(k, db=db) for k in keys]
            finally:
                txn.abort()
        finally:
            self._reader_exit()

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        with self.read() as tx:
            return tx.get(bucket, key)

    def range(
        self, bucket: bytes, start: bytes = b"", end: bytes | None = None, limit: int = 0
    ) -> list[tuple[bytes, bytes]]:
        with self.read() as tx:
            return tx.range(bucket, start, end, limit)

    # -- sizes, hash ---------------------------------------------------------------------------

    def size(self) -> int:
        """Bytes of the database file (etcd's dbSize)."""
        return os.stat(self._path).st_size

    def size_in_use(self) -> int:
        """Bytes of the pages holding data, i.e. the file less its free pages (dbSizeInUse)."""
        with self._reading() as env:
            with env.begin() as txn:
                main = env.stat()
                psize = int(main["psize"])
                pages = 2 + main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
                for db in self._dbs.values():
                    st = txn.stat(db)
                    pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return pages * psize

    def hash(self, ignores: Iterable[tuple[bytes, bytes]] = DEFAULT_HASH_IGNORES) -> int:
        """CRC-32C over every bucket's name, keys and values in committed state, buckets in name
        order (Maintenance.Hash); (bucket, key) pairs in ignores are left out."""
        skip = frozenset(ignores)
        h = 0
        with self._reading() as env, env.begin() as txn:
            for name in sorted(self._dbs):
                h = crc32c.crc32c(name, h)
                cur = txn.cursor(db=self._dbs[name])
                for k, v in cur.iternext():
                    if (name, k) in skip:
                        continue
                    h = crc32c.crc32c(v, crc32c.crc32c(k, h))
        return h

    # -- defrag, snapshot ----------------------------------------------------------------------

    def _exclusive_begin(self) -> None:
        """Wait until no batch is open, then keep new batches from opening."""
        me = threading.get_ident()
        if self._wtxn is not None and self._owner == me:
            self._commit()
        with self._cond:
            self._check_open()
            self._exclusive_waiters += 1
            try:
                while self._wtxn is not None or self._writes_blocked:
                    if self._wtxn is not None:
                        if self._owner == me:
                            raise BackendError("backend: exclusive operation with a batch open")
                        self._commit_requested = True
                        self._tell_listeners()
                    self._cond.wait()
                self._writes_blocked = True
            finally:
                self._exclusive_waiters -= 1
                if self._exclusive_waiters == 0 and not self._writes_blocked:  # gave up (closed)
                    self._tell_listeners()

    def _copy(self, dest: str) -> None:
        """LMDB's compacting copy of the committed state to dest, made by a child process.

        py-lmdb 3 holds an environment-wide lock for the whole of env.copy(), so a copy in this
        process would stall every read and write of the owner thread (the server's event loop)
        for as long as the copy takes (0.42 s for a 588 MB file here). A child process opens the
        same file as one more LMDB reader (LMDB is multi-process safe) and copies a consistent
        snapshot while this process goes on unhindered."""
        if os.path.exists(dest):
            os.unlink(dest)
        proc = subprocess.run(
            [sys.executable, "-c", _COPY_SCRIPT, self._path, dest],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BackendError(f"backend: copying {self._path} failed: {proc.stderr.strip()[-2000:]}")

    def _exclusive_end(self) -> None:
        with self._cond:
            self._writes_blocked = False
            self._cond.notify_all()
        self._tell_listeners()

    def defrag(self) -> None:
        """Rewrite the file without its free pages: LMDB's compacting copy to a temporary file
        (made by a child process, see _copy), then swap it in and reopen. Writers wait while it
        runs; readers go on during the copy and pause only for the swap. Call it from a worker
        thread so the caller's event loop keeps running; pending writes of a batch owned by
        another thread are committed at that thread's next commit_if_due() first."""
        self._exclusive_begin()
        tmp = self._path + ".defrag"
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
            self._copy(tmp)
            _fsync_file(tmp)
            old = self._path + ".predefrag"
            if os.path.exists(old):
                os.unlink(old)
            with self._cond:
                self._swap_pending = True
                try:
                    while self._external:
                        self._cond.wait()
                finally:
                    self._swap_pending = False
                self._swapping = True
                try:
                    while self._readers:
                        self._cond.wait()
                    if self._wtxn is not None:  # pragma: no cover - _exclusive_begin rules it out
                        raise BackendError("backend: defrag swap with a batch open")
                    map_size = int(self._env.info()["map_size"])
                    self._env.close()
                    # A hard link keeps the old file's blocks alive through the rename, so freeing
                    # them (slow for a big file) happens after the swap, outside the lock; the
                    # rename itself is atomic, so a crash leaves either file whole at the path.
                    os.link(self._path, old)
                    os.replace(tmp, self._path)
                    self._env, self._dbs = self._open_env(map_size, reopen=True)
                finally:
                    self._swapping = False
                    self._cond.notify_all()
            # Readers are back; writers stay blocked until the rename is durable.
            _fsync_dir(self._path)
            os.unlink(old)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            self._exclusive_end()

    def snapshot_to(self, target: str | os.PathLike[str] | BinaryIO) -> int:
        """Write a consistent copy of the committed database (a valid LMDB file) to a path or a
        binary file object; returns its size. Pending writes of the open batch are not in it:
        force_commit() on the owner thread first to include them.

        The copy is always LMDB's compacting copy: the plain copy takes LMDB's writer lock, so it
        would wait for (or, on the owner thread, deadlock on) the open batch; the compacting copy
        reads through a read transaction only, and leaves out free pages as a bonus."""
        if isinstance(target, (str, os.PathLike)):
            dest = os.fspath(target)
            if os.path.exists(dest):
                os.unlink(dest)
            with self.external_reader():
                self._copy(dest)
            return os.stat(dest).st_size
        tmp = f"{self._path}.snap.{threading.get_ident()}"
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
            with self.external_reader():
                self._copy(tmp)
            with open(tmp, "rb") as src:
                shutil.copyfileobj(src, target, 1 << 20)
            return os.stat(tmp).st_size
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def close(self) -> None:
        """Commit the batch (call it on the thread that owns an open batch) and close the file."""
        if self._closed:
            return
        if self._wtxn is not None and self._owner == threading.get_ident():
            self._commit()
        with self._cond:
            if self._wtxn is not None:
                # Its LMDB writer lock can only be released by the thread that holds it.
                raise BackendError("backend: close() with a batch open on another thread")
            self._swapping = True
            try:
                while self._readers:
                    self._cond.wait()
                self._closed = True
                self._env.close()
            finally:
                self._swapping = False
                self._cond.notify_all()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
