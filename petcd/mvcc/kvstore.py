"""The multi-version key-value store (etcd's mvcc store) on the LMDB backend.

How it works
------------
* Every write txn that changes something creates one new main revision; its changes are numbered
  by sub revision (0, 1, ...). A txn that changes nothing creates no revision.
* The key bucket maps revision bytes (``petcd.mvcc.revision``) to a serialized mvccpb.KeyValue:
  a put stores the full KeyValue, a delete stores a tombstone (revision key + ``t``) holding only
  the key. Revision keys only grow, so they are written in LMDB append mode.
* The in-memory TreeIndex maps each key to its generations of revisions (``key_index``). A read at
  revision R asks the index which revision of each key was visible at R, then reads those records.
  The index is rebuilt from the key bucket when the store opens.
* The meta bucket holds the consistent index and term (written in the same backend batch as the
  data of the entry they cover: the backend commits only between entries), and the scheduled and
  finished compaction revisions. The consistent index is written once when a batch first records
  one, and rewritten with the latest value by a commit hook just before the batch commits, rather
  than once per applied entry.
* compact(R) makes reads below R fail at once, compacts the index and records R as scheduled;
  the superseded records are then deleted in batches by compact_step(), so the server can
  interleave them with other work, and R is recorded as finished at the end. On open, a
  scheduled-but-unfinished compaction is finished.

The store is used from one thread (the server's apply thread); it holds no locks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import crc32c

from petcd.backend import CONSISTENT_INDEX_KEY, KEY, META, TERM_KEY, Backend
from petcd.mvcc.errors import CompactedError, CorruptError, FutureRevError, MVCCError
from petcd.mvcc.index import TreeIndex
from petcd.mvcc.revision import bound, bytes_to_rev, is_tombstone, main_of, pack, rev_to_bytes
from petcd.proto.mvccpb import kv_pb2 as mvccpb

SCHEDULED_COMPACT_KEY = b"scheduledCompactRev"
FINISHED_COMPACT_KEY = b"finishedCompactRev"
_U64 = struct.Struct(">Q")
_RESTORE_BATCH = 10000
_EVENT_PUT = mvccpb.Event.PUT
_EVENT_DELETE = mvccpb.Event.DELETE


@dataclass(frozen=True, slots=True)
class RangeOptions:
    limit: int = 0  # 0 = no limit
    rev: int = 0  # 0 = the current revision
    count_only: bool = False


@dataclass(slots=True)
class RangeResult:
    kvs: list[mvccpb.KeyValue]
    rev: int  # the store's current revision (as etcd reports it), not the revision read at
    count: int  # keys in the range at that revision, regardless of limit


_DEFAULT_OPTS = RangeOptions()


@dataclass(slots=True)
class _CompactJob:
    rev: int
    keep: set[int]
    next_key: bytes = b""
    deleted: int = field(default=0)


class WriteTxn:
    """A write transaction: every change in it gets main revision begin_rev + 1.

    Nothing is rolled back: a txn that raises after changing something still ends with its
    revision, so validate before writing (as etcd's apply does)."""

    def __init__(self, store: KVStore) -> None:
        self._store = store
        self.begin_rev = store._rev
        # the changes, built as events from the start: each KeyValue is written in place inside
        # its Event rather than copied into one later (a put's largest cost otherwise)
        self._events: list[mvccpb.Event] = []
        self._ended = False

    @property
    def rev(self) -> int:
        """The revision reads in this txn see: begin_rev + 1 once it has changed something."""
        return self.begin_rev + 1 if self._events else self.begin_rev

    def range(self, key: bytes, end: bytes = b"", opts: RangeOptions | None = None) -> RangeResult:
        """As KVStore.range, seeing this txn's own changes."""
        return self._store._range(key, end, opts or _DEFAULT_OPTS, self.rev)

    def put(self, key: bytes, value: bytes, lease: int = 0) -> mvccpb.KeyValue:
        """Put key = value; keeps the create revision and bumps the version of a live key, starts a
        new generation (version 1) otherwise. Returns the new KeyValue."""
        store = self._store
        events = self._events
        main = self.begin_rev + 1
        rev = pack(main, len(events))
        found = store._index.get(key, main)
        if found is None:
            create, ver = main, 1
        else:
            create, ver = main_of(found[1]), found[2] + 1
        ev = mvccpb.Event(type=_EVENT_PUT)
        kv = ev.kv
        kv.key = key
        kv.value = value
        kv.create_revision = create
        kv.mod_revision = main
        kv.version = ver
        kv.lease = lease
        store._be.put(KEY, rev_to_bytes(rev), kv.SerializeToString(), append=True)
        store._index.put(key, rev)
        events.append(ev)
        return kv

    def delete_range(self, key: bytes, end: bytes = b"") -> list[mvccpb.KeyValue]:
        """Delete the keys in the range live now; returns their KeyValues before the delete."""
        store = self._store
        live = store._index.live(key, end, self.rev)
        if not live:
            return []
        prev = store._read_kvs([r for _, r in live])
        main = self.begin_rev + 1
        be = store._be
        events = self._events
        for k, _ in live:
            rev = pack(main, len(events))
            ev = mvccpb.Event(type=_EVENT_DELETE)
            tomb = ev.kv
            tomb.key = k
            be.put(KEY, rev_to_bytes(rev, tombstone=True), tomb.SerializeToString(), append=True)
            store._index.tombstone(k, rev)
            tomb.mod_revision = main  # in the event only: the stored tombstone holds just the key
            events.append(ev)
        return prev

    def set_consistent_index(self, index: int, term: int | None = None) -> None:
        self._store.set_consistent_index(index, term)

    @property
    def changes(self) -> list[mvccpb.Event]:
        """The txn's changes as watch events, in order: PUT with the new KeyValue, DELETE with a
        KeyValue holding the key and the delete's mod revision."""
        return self._events

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._store._end(self)

    def __enter__(self) -> WriteTxn:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end()


class KVStore:
    """etcd's MVCC key-value store; see the module docstring."""

    def __init__(self, backend: Backend, compaction_batch: int = 1000) -> None:
        self._be = backend
        self._compaction_batch = compaction_batch
        self._index = TreeIndex()
        self._rev = 0
        self._compact_rev = 0
        self._consistent_index = 0
        self._term = 0
        # True while the open backend batch holds a consistent index that the commit hook must
        # bring up to date (see set_consistent_index)
        self._ci_pending = False
        self._txn: WriteTxn | None = None
        self._job: _CompactJob | None = None
        self._listeners: list[Callable[[list[mvccpb.Event], int], None]] = []
        self._restore()
        backend.add_commit_hook(self._save_consistent_index)

    # -- state ---------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        return self._be

    @property
    def rev(self) -> int:
        return self._rev

    @property
    def compact_rev(self) -> int:
        """The last compaction revision (scheduled, even if its deletions are not finished);
        0 if the store was never compacted."""
        return self._compact_rev

    @property
    def consistent_index(self) -> int:
        return self._consistent_index

    @property
    def term(self) -> int:
        return self._term

    def __len__(self) -> int:
        """Keys in the index (live now, or with history kept since the last compaction)."""
        return len(self._index)

    def set_consistent_index(self, index: int, term: int | None = None) -> None:
        """Record the raft index (and term) of the entry being applied; written to the meta
        bucket in the backend batch that holds the entry's data."""
        self._consistent_index = index
        if not self._ci_pending:
            # The first one of a batch is written now (which opens the batch if none is open,
            # so a commit is sure to follow); later ones only in _save_consistent_index, which
            # runs just before that commit. The backend commits only between entries, so the
            # committed value always covers exactly the data committed with it.
            self._be.put(META, CONSISTENT_INDEX_KEY, _U64.pack(index))
            self._ci_pending = True
        if term is not None and term != self._term:
            self._term = term
            self._be.put(META, TERM_KEY, _U64.pack(term))

    def _save_consistent_index(self) -> None:
        """Backend commit hook: the batch about to commit gets the latest consistent index."""
        if self._ci_pending:
            self._ci_pending = False
            self._be.put(META, CONSISTENT_INDEX_KEY, _U64.pack(self._consistent_index))

    # -- restore -------------------------------------------------------------------------------

    def _restore(self) -> None:
        be = self._be
        ci = be.get(META, CONSISTENT_INDEX_KEY)
        term = be.get(META, TERM_KEY)
        scheduled = be.get(META, SCHEDULED_COMPACT_KEY)
        finished = be.get(META, FINISHED_COMPACT_KEY)
        self._consistent_index = _U64.unpack(ci)[0] if ci else 0
        self._term = _U64.unpack(term)[0] if term else 0
        finished_rev = main_of(bytes_to_rev(finished)) if finished else 0
        scheduled_rev = main_of(bytes_to_rev(scheduled)) if scheduled else 0
        index = self._index
        start = b""
        last_main = 0
        while True:
            with be.read() as tx:
                items = tx.range(KEY, start, None, _RESTORE_BATCH)
            for k, v in items:
                rev = bytes_to_rev(k)
                kv = mvccpb.KeyValue.FromString(v)
                if is_tombstone(k):
                    index.restore_tombstone(kv.key, rev)
                else:
                    index.restore(kv.key, rev, kv.create_revision, kv.version)
            if items:
                last_main = main_of(bytes_to_rev(items[-1][0]))
            if len(items) < _RESTORE_BATCH:
                break
            start = items[-1][0] + b"\x00"
        self._compact_rev = max(finished_rev, scheduled_rev)
        # Compaction may have deleted every record up to the compaction revision.
        # an empty store is at revision 1, as etcd's is: the first write gets revision 2
        self._rev = max(last_main, self._compact_rev, 1)
        if scheduled_rev > finished_rev:
            # A compaction was interrupted: redo it (deleting records is idempotent).
            self._job = _CompactJob(scheduled_rev, index.compact(scheduled_rev))
            self.finish_compaction()

    # -- reads ---------------------------------------------------------------------------------

    def range(self, key: bytes, end: bytes = b"", opts: RangeOptions | None = None) -> RangeResult:
        """Keys in the range (end == b"": the key alone; b"\\x00": every key >= key; else
        [key, end)) at opts.rev (0 = now), in key order. CompactedError below the compaction
        revision, FutureRevError above the current revision."""
        return self._range(key, end, opts or _DEFAULT_OPTS, self._rev)

    def _range(self, key: bytes, end: bytes, opts: RangeOptions, cur: int) -> RangeResult:
        rev = opts.rev
        if rev > cur:
            raise FutureRevError()
        if rev <= 0:
            rev = cur
        if rev < self._compact_rev:
            raise CompactedError()
        if opts.count_only:
            return RangeResult([], cur, self._index.count(key, end, rev))
        revs, total = self._index.revisions(key, end, rev, max(opts.limit, 0))
        return RangeResult(self._read_kvs(revs), cur, total)

    def _read_kvs(self, revs: list[int]) -> list[mvccpb.KeyValue]:
        if not revs:
            return []
        parse = mvccpb.KeyValue.FromString
        out: list[mvccpb.KeyValue] = []
        for r, data in zip(revs, self._be.get_many(KEY, [rev_to_bytes(r) for r in revs]), strict=True):
            if data is None:
                raise CorruptError(f"mvcc: revision {main_of(r)}.{r & 0xFFFFFFFF} missing in backend")
            out.append(parse(data))
        return out

    def events(self, start_rev: int, end_rev: int = 0, limit: int = 0) -> list[mvccpb.Event]:
        """The changes with main revision in [start_rev, end_rev) (end_rev 0 = to the current
        revision inclusive), in revision order, read from the backend (for watchers catching up).
        DELETE events carry a KeyValue with the key and the delete's mod revision."""
        if start_rev < self._compact_rev:
            raise CompactedError()
        end = rev_to_bytes(pack(end_rev)) if end_rev else None
        with self._be.read() as tx:
            items = tx.range(KEY, rev_to_bytes(pack(max(start_rev, 0))), end, limit)
        out: list[mvccpb.Event] = []
        for k, v in items:
            kv = mvccpb.KeyValue.FromString(v)
            if is_tombstone(k):
                kv.mod_revision = main_of(bytes_to_rev(k))
                out.append(mvccpb.Event(type=_EVENT_DELETE, kv=kv))
            else:
                out.append(mvccpb.Event(type=_EVENT_PUT, kv=kv))
        return out

    # -- writes --------------------------------------------------------------------------------

    def write(self) -> WriteTxn:
        """Open the write txn (one at a time): ``with store.write() as txn: ...``."""
        if self._txn is not None:
            raise MVCCError("mvcc: a write txn is already open")
        self._txn = WriteTxn(self)
        return self._txn

    def add_listener(self, listener: Callable[[list[mvccpb.Event], int], None]) -> None:
        """Call listener(events, rev) after every write txn that changed something, on the
        owning thread, with the txn's events in order (the lessor and watchers use it)."""
        self._listeners.append(listener)

    def _end(self, txn: WriteTxn) -> None:
        self._txn = None
        events = txn._events
        if events:
            self._rev = txn.begin_rev + 1
            if self._listeners:
                for listener in self._listeners:
                    listener(events, self._rev)

    # -- compaction ----------------------------------------------------------------------------

    def compact(self, rev: int) -> None:
        """Compact at rev: reads below rev fail from now on. CompactedError if rev <= the current
        compaction revision, FutureRevError if rev > the current revision. The superseded records
        are deleted by compact_step() / finish_compaction()."""
        if rev <= self._compact_rev:
            raise CompactedError()
        if rev > self._rev:
            raise FutureRevError()
        if self._job is not None:
            self.finish_compaction()
        self._compact_rev = rev
        self._be.put(META, SCHEDULED_COMPACT_KEY, rev_to_bytes(pack(rev)))
        self._job = _CompactJob(rev, self._index.compact(rev))

    @property
    def compaction_pending(self) -> bool:
        return self._job is not None

    def compact_step(self, batch: int = 0) -> bool:
        """Delete one batch (batch or compaction_batch records scanned) of the records the last
        compact() superseded; returns True while more remain. Call between applied entries."""
        job = self._job
        if job is None:
            return False
        n = batch or self._compaction_batch
        with self._be.read() as tx:
            keys = tx.keys(KEY, job.next_key, rev_to_bytes(pack(job.rev + 1)), n)
        keep = job.keep
        be = self._be
        for k in keys:
            if bytes_to_rev(k) not in keep:
                be.delete(KEY, k)
                job.deleted += 1
        if len(keys) < n:
            be.put(META, FINISHED_COMPACT_KEY, rev_to_bytes(pack(job.rev)))
            self._job = None
            return False
        job.next_key = keys[-1] + b"\x00"
        return True

    def finish_compaction(self) -> None:
        while self.compact_step():
            pass

    # -- hash ----------------------------------------------------------------------------------

    def hash_kv(self, rev: int = 0) -> tuple[int, int, int]:
        """(hash, current revision, compaction revision) as etcd's HashKV: CRC-32C over the bucket
        name and every record up to rev (0 = now) that a compaction at rev would keep, so members
        with the same history agree whatever their compaction progress (checked against etcd
        3.4.23: same hashes). As there, the compaction revision is -1 if the store was never
        compacted, and rev <= the compaction revision is CompactedError."""
        cur, compact_rev = self._rev, self._compact_rev
        if rev > 0 and rev <= compact_rev:
            raise CompactedError()
        if rev > 0 and rev > cur:
            raise FutureRevError()
        if rev <= 0:
            rev = cur
        keep = self._index.keep(rev)
        lower = bound(compact_rev)
        upper = rev_to_bytes(pack(rev + 1))
        h = crc32c.crc32c(KEY)
        start = b""
        while True:
            with self._be.read() as tx:
                items = tx.range(KEY, start, upper, _RESTORE_BATCH)
            for k, v in items:
                # Records at or below the compaction revision count only if the compaction keeps
                # them, so the hash does not depend on how far the deletions have got. (etcd skips
                # this filter when nothing is kept, which makes its hash depend on it.)
                r = bytes_to_rev(k)
                if r < lower and r not in keep:
                    continue
                h = crc32c.crc32c(v, crc32c.crc32c(k, h))
            if len(items) < _RESTORE_BATCH:
                break
            start = items[-1][0] + b"\x00"
        return h, cur, compact_rev if compact_rev else -1
