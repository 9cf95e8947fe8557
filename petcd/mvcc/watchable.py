"""The watchable store: etcd's watchers on top of the MVCC store.

How it works
------------
A *watcher* watches one key or one key range from a revision on (``min_rev``: the next revision
it has not been told about). Every watcher is in exactly one of these states:

* **synced** -- it has seen everything up to the store's current revision. The store calls
  ``_on_txn(events, rev)`` after every write txn (a KVStore listener, on the owning thread), and
  each synced watcher whose range holds some of the txn's keys gets one response with those
  events, at once.
* **unsynced** -- its ``min_rev`` is in the past (a watch from an old revision, or a watcher that
  fell behind). ``sync_unsynced()`` reads the history from the backend, a window of at most
  ``batch_revs`` revisions at a time, and hands each watcher its events in one response per
  window; a watcher whose window reaches the current revision becomes synced. Nothing can be
  written between the read and the move (it all runs on the thread that applies writes), so no
  event falls in between.
* **victim** -- a response for it did not fit in its stream's send buffer. The response is kept
  on the watcher (``pending``), the watcher leaves the synced/unsynced sets so writers never wait
  for it, and ``retry_victims()`` tries again once the stream has room; after that the watcher
  catches up from the backend (unsynced) or is synced again.
* **compacted** -- its ``min_rev`` fell below the compaction revision before it caught up: it
  gets one response with ``compact_revision`` set and no more events (its id stays taken on the
  stream until the client cancels it, as in etcd).

A *stream* (``WatchStream``) is one client's set of watchers sharing one bounded queue of
responses. Event responses that do not fit make their watcher a victim; control responses
(created, canceled, progress for the whole stream) are always queued -- they answer a client
request, one each, so the servicer bounds them by reading no more requests while the queue is full.

Nothing here blocks, sleeps or reads a clock: the server calls ``sync_step()`` from a task
(``petcd.mvcc.watch_sync``), woken through ``on_work`` when there is something to do.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from petcd.mvcc.errors import MVCCError
from petcd.mvcc.kvstore import KVStore, RangeOptions
from petcd.mvcc.watch_group import FROM_KEY, WatcherGroup
from petcd.proto.mvccpb import kv_pb2 as mvccpb

# etcd's limits: events of at most 1000 revisions per catch-up response, 512 watchers per sync
BATCH_REVS = 1000
MAX_WATCHERS_PER_SYNC = 512
# responses queued per stream before its watchers become victims (etcd's chanBufLen)
STREAM_CAPACITY = 128

AUTO_WATCH_ID = 0
INVALID_WATCH_ID = -1

_PUT = mvccpb.Event.PUT
_DELETE = mvccpb.Event.DELETE


class WatchError(MVCCError):
    """A watch the stream refuses; the message is etcd's cancel_reason."""


class DuplicateWatchIDError(WatchError):
    def __init__(self) -> None:
        super().__init__("mvcc: duplicate watch ID provided on the WatchStream")


class EmptyWatcherRangeError(WatchError):
    def __init__(self) -> None:
        super().__init__("mvcc: watcher range is empty")


class State(enum.Enum):
    SYNCED = "synced"
    UNSYNCED = "unsynced"
    VICTIM = "victim"
    COMPACTED = "compacted"
    CANCELED = "canceled"


@dataclass(slots=True)
class WatchResponse:
    """One response of a stream, before the API layer turns it into a pb.WatchResponse.

    revision is the header revision etcd gives it: the txn's revision for live events, the
    store's revision when history was read for catch-up, 0 for a compaction cancel."""

    watch_id: int
    revision: int
    events: list[mvccpb.Event] = field(default_factory=list)
    compact_revision: int = 0
    created: bool = False
    canceled: bool = False
    cancel_reason: str = ""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """What a create request asks for beyond key, range and start revision."""

    no_put: bool = False
    no_delete: bool = False
    prev_kv: bool = False
    progress_notify: bool = False
    fragment: bool = False


class Watcher:
    __slots__ = ("end", "id", "key", "min_rev", "opts", "pending", "state", "stream")

    def __init__(self, stream: WatchStream, watch_id: int, key: bytes, end: bytes, opts: WatchOptions) -> None:
        self.stream = stream
        self.id = watch_id
        self.key = key
        self.end = end
        self.opts = opts
        self.min_rev = 0
        self.state = State.UNSYNCED
        self.pending: WatchResponse | None = None  # a victim's undelivered response

    def select(self, events: list[mvccpb.Event]) -> list[mvccpb.Event]:
        """The events its filters let through."""
        o = self.opts
        if o.no_put or o.no_delete:
            drop = _PUT if o.no_put else _DELETE
            if o.no_put and o.no_delete:
                return []
            return [e for e in events if e.type != drop]
        return events

    def __repr__(self) -> str:
        return f"<Watcher {self.id} [{self.key!r}, {self.end!r}) {self.state.value} min_rev={self.min_rev}>"


class WatchableStore:
    """Watchers over one KVStore; see the module docstring."""

    def __init__(
        self,
        store: KVStore,
        batch_revs: int = BATCH_REVS,
        max_watchers_per_sync: int = MAX_WATCHERS_PER_SYNC,
    ) -> None:
        self.store = store
        self.batch_revs = batch_revs
        self.max_watchers_per_sync = max_watchers_per_sync
        self._synced: WatcherGroup[Watcher] = WatcherGroup()
        self._unsynced: dict[Watcher, None] = {}
        self._victims: dict[Watcher, None] = {}
        self._last_rev = store.rev  # the revision of the last change the store reported
        self.victims_total = 0  # watchers ever set aside for a full buffer (for metrics, tests)
        # called when unsynced watchers or victims wait for sync_step()
        self.on_work: Callable[[], None] | None = None
        store.add_listener(self._on_txn)

    # -- introspection ---------------------------------------------------------------------

    @property
    def rev(self) -> int:
        return self.store.rev

    def counts(self) -> tuple[int, int, int]:
        """(synced, unsynced, victims): etcd's watcher gauges."""
        return len(self._synced), len(self._unsynced), len(self._victims)

    def has_work(self) -> bool:
        return bool(self._unsynced) or bool(self._victims)

    def new_stream(self, capacity: int = STREAM_CAPACITY, on_ready: Callable[[], None] | None = None) -> WatchStream:
        return WatchStream(self, capacity, on_ready)

    def restore(self, store: KVStore | None = None) -> None:
        """The server replaced or reloaded its store (a raft snapshot from the leader): every
        synced watcher may have missed changes, so all of them catch up from the store again
        from the revision they had reached (etcd's watchableStore.Restore)."""
        if store is not None and store is not self.store:
            self.store = store
            store.add_listener(self._on_txn)
        for w in list(self._synced):
            self._synced.discard(w)
            # it has seen every change up to the last one the old store reported
            w.min_rev = max(w.min_rev, self._last_rev + 1)
            w.state = State.UNSYNCED
            self._unsynced[w] = None
        self._wake()

    # -- adding and removing watchers --------------------------------------------------------

    def _add(self, w: Watcher, start_rev: int) -> None:
        cur = self.store.rev
        if start_rev == 0 or start_rev > cur:
            w.min_rev = max(start_rev, cur + 1)
            w.state = State.SYNCED
            self._synced.add(w)
        else:
            w.min_rev = start_rev
            w.state = State.UNSYNCED
            self._unsynced[w] = None
            self._wake()

    def _remove(self, w: Watcher, state: State) -> None:
        if w.state is State.SYNCED:
            self._synced.discard(w)
        elif w.state is State.UNSYNCED:
            self._unsynced.pop(w, None)
        elif w.state is State.VICTIM:
            self._victims.pop(w, None)
        w.pending = None
        w.state = state

    def _wake(self) -> None:
        if self.on_work is not None:
            self.on_work()

    def _make_victim(self, w: Watcher, resp: WatchResponse) -> None:
        self.victims_total += 1
        w.state = State.VICTIM
        w.pending = resp
        self._victims[w] = None
        w.stream._blocked = True

    # -- live events --------------------------------------------------------------------------

    def _on_txn(self, events: list[mvccpb.Event], rev: int) -> None:
        """KVStore listener: one response per synced watcher the txn concerns."""
        self._last_rev = rev
        synced = self._synced
        if not synced:
            return
        batches: dict[Watcher, list[mvccpb.Event]] = {}
        for ev in events:
            for w in synced.matching(ev.kv.key):
                if rev >= w.min_rev:  # a watcher from a future revision waits for it
                    b = batches.get(w)
                    if b is None:
                        batches[w] = [ev]
                    else:
                        b.append(ev)
        victims = False
        for w, evs in batches.items():
            evs = w.select(evs)
            if not evs:
                continue
            resp = WatchResponse(w.id, rev, evs)
            if not w.stream._push(resp):
                # the client reads too slowly: set it aside so this txn (and the next) need not wait
                synced.discard(w)
                w.min_rev = rev + 1
                self._make_victim(w, resp)
                victims = True
            else:
                w.stream.sent_events(w)
        if victims:
            self._wake()

    # -- catching up ----------------------------------------------------------------------------

    def sync_step(self) -> bool:
        """One round of victim retries and catch-up; True if it got something done (call again
        soon), False if all that is left waits for clients to read or for new writes."""
        moved = self.retry_victims()
        synced = self.sync_unsynced()
        return moved or synced

    def retry_victims(self) -> bool:
        """Queue the responses victims are owed where their stream has room again; then they
        catch up from the backend (or are synced, if nothing was written meanwhile)."""
        if not self._victims:
            return False
        cur = self.store.rev
        moved = False
        for w in list(self._victims):
            resp = w.pending
            if resp is not None and not w.stream._push(resp):
                w.stream._blocked = True
                continue
            if resp is not None:
                w.stream.sent_events(w)
            del self._victims[w]
            w.pending = None
            moved = True
            if w.min_rev <= cur:
                w.state = State.UNSYNCED
                self._unsynced[w] = None
            else:
                self._to_synced(w)
        return moved

    def sync_unsynced(self) -> bool:
        """Catch up to max_watchers_per_sync unsynced watchers by one window of history."""
        if not self._unsynced:
            return False
        store = self.store
        cur, compact = store.rev, store.compact_rev
        chosen: list[Watcher] = []
        done = False
        for w in list(self._unsynced):
            if len(chosen) >= self.max_watchers_per_sync:
                break
            if w.stream.full:
                continue
            if w.min_rev < compact:
                # the history it needs is gone (etcd cancels only below the compaction revision)
                if w.stream._push(WatchResponse(w.id, 0, compact_revision=compact)):
                    del self._unsynced[w]
                    w.state = State.COMPACTED
                    w.stream._settled()
                    done = True
                continue
            if w.min_rev > cur:
                del self._unsynced[w]
                self._to_synced(w)
                done = True
                continue
            chosen.append(w)
        if not chosen:
            return done
        # the window starts where the first watcher in line needs it; caught-up watchers go to
        # the back of the line, so a watcher far behind does not hold up the others
        lo = chosen[0].min_rev
        hi = min(cur, lo + self.batch_revs - 1)
        events = store.events(lo, hi + 1)
        group: WatcherGroup[Watcher] = WatcherGroup()
        for w in chosen:
            if lo <= w.min_rev <= hi:
                group.add(w)
        batches: dict[Watcher, list[mvccpb.Event]] = {}
        for ev in events:
            mod = ev.kv.mod_revision
            for w in group.matching(ev.kv.key):
                if mod >= w.min_rev:
                    batches.setdefault(w, []).append(ev)
        for w in group:
            w.min_rev = hi + 1
            evs = w.select(batches.get(w, []))
            del self._unsynced[w]
            if evs:
                resp = WatchResponse(w.id, cur, evs)
                if not w.stream._push(resp):
                    self._make_victim(w, resp)
                    continue
                w.stream.sent_events(w)
            if hi >= cur:
                self._to_synced(w)
            else:
                self._unsynced[w] = None  # more history to read; goes to the back of the line
        return True

    def _to_synced(self, w: Watcher) -> None:
        w.state = State.SYNCED
        self._synced.add(w)
        w.stream._settled()

    # -- progress and prev_kv -----------------------------------------------------------------

    def progress(self, w: Watcher) -> bool:
        """A progress notification for one synced watcher (etcd skips the others: they are
        still receiving events). Dropped when the stream is full, as in etcd."""
        if w.state is not State.SYNCED:
            return False
        return w.stream._push(WatchResponse(w.id, self.store.rev))

    def with_prev_kv(self, events: Iterable[mvccpb.Event]) -> list[mvccpb.Event]:
        """Copies of the events with prev_kv: the key's value just before the event, read from
        the store (none for a create, or when that revision has been compacted)."""
        out: list[mvccpb.Event] = []
        store = self.store
        for ev in events:
            kv = ev.kv
            if ev.type == _PUT and kv.create_revision == kv.mod_revision:
                out.append(ev)
                continue
            try:
                r = store.range(kv.key, b"", RangeOptions(rev=kv.mod_revision - 1))
            except MVCCError:
                out.append(ev)
                continue
            if not r.kvs:
                out.append(ev)
                continue
            ne = mvccpb.Event()
            ne.CopyFrom(ev)
            ne.prev_kv.CopyFrom(r.kvs[0])
            out.append(ne)
        return out


class WatchStream:
    """One client's watchers and their bounded response queue (etcd's watchStream)."""

    def __init__(self, ws: WatchableStore, capacity: int, on_ready: Callable[[], None] | None) -> None:
        self.ws = ws
        self.capacity = capacity
        self.on_ready = on_ready
        self.watchers: dict[int, Watcher] = {}
        self._next_id = 0
        self._queue: deque[WatchResponse] = deque()
        self._blocked = False  # a push failed: watchers wait for room
        self._progress_deferred = False
        self.closed = False
        # ids with events sent since the last progress tick (etcd elides that tick's notification)
        self.active: set[int] = set()

    @property
    def rev(self) -> int:
        return self.ws.store.rev

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.capacity

    def __len__(self) -> int:
        return len(self._queue)

    # -- requests -----------------------------------------------------------------------------

    def watch(
        self,
        key: bytes,
        end: bytes = b"",
        start_rev: int = 0,
        watch_id: int = AUTO_WATCH_ID,
        opts: WatchOptions | None = None,
    ) -> Watcher:
        """Add a watcher and queue its created response (before any of its events). end uses
        the store's convention (b"": the key alone, b"\\x00": every key >= key). Raises a
        WatchError (after queueing etcd's refusal) for an empty range or a duplicate id."""
        rev = self.ws.store.rev
        try:
            if end and end != FROM_KEY and key >= end:
                raise EmptyWatcherRangeError()
            if self.closed:
                raise EmptyWatcherRangeError()  # etcd's answer on a closed stream
            if watch_id == AUTO_WATCH_ID:
                while self._next_id in self.watchers:
                    self._next_id += 1
                watch_id = self._next_id
                self._next_id += 1
            elif watch_id in self.watchers:
                raise DuplicateWatchIDError()
        except WatchError as exc:
            self.refuse(str(exc))
            raise
        w = Watcher(self, watch_id, key, end, opts or WatchOptions())
        self.watchers[watch_id] = w
        self._push_ctrl(WatchResponse(watch_id, rev, created=True))
        self.ws._add(w, start_rev)
        return w

    def refuse(self, reason: str, watch_id: int = INVALID_WATCH_ID) -> None:
        """Queue a refusal of a create request decided above the store (e.g. permission; etcd
        answers that one with the id the request asked for)."""
        self._push_ctrl(WatchResponse(watch_id, self.ws.store.rev, created=True, canceled=True, cancel_reason=reason))

    def cancel(self, watch_id: int) -> bool:
        """Remove a watcher and queue its canceled response; False (nothing queued) if the id is
        not on this stream."""
        w = self.watchers.pop(watch_id, None)
        if w is None:
            return False
        self.ws._remove(w, State.CANCELED)
        self.active.discard(watch_id)
        # what is still queued for it would only be dropped by the client (etcd drops it too)
        if any(r.watch_id == watch_id for r in self._queue):
            self._queue = deque(r for r in self._queue if r.watch_id != watch_id or r.created)
        self._push_ctrl(WatchResponse(watch_id, self.ws.store.rev, canceled=True))
        self._settled()
        return True

    def request_progress(self, watch_id: int) -> bool:
        w = self.watchers.get(watch_id)
        return w is not None and self.ws.progress(w)

    def request_progress_all(self) -> None:
        """A progress response for the whole stream (watch_id -1) at the current revision; held
        back until every watcher of the stream is synced, so that the revision never claims
        events a lagging watcher has not delivered yet."""
        self._progress_deferred = True
        self._settled()

    def _settled(self) -> None:
        """A watcher became synced or left: send a held-back stream progress if now allowed."""
        if not self._progress_deferred:
            return
        for w in self.watchers.values():
            if w.state is State.UNSYNCED or w.state is State.VICTIM:
                return
        self._progress_deferred = False
        self._push_ctrl(WatchResponse(INVALID_WATCH_ID, self.ws.store.rev))

    def sent_events(self, w: Watcher) -> None:
        self.active.add(w.id)

    def close(self) -> None:
        """Release every watcher and drop queued responses."""
        if self.closed:
            return
        self.closed = True
        for w in self.watchers.values():
            self.ws._remove(w, State.CANCELED)
        self.watchers.clear()
        self._queue.clear()

    # -- the queue ------------------------------------------------------------------------------

    def _push(self, resp: WatchResponse) -> bool:
        if self.closed:
            return True  # nobody will read it; never make a victim of a closed stream
        if len(self._queue) >= self.capacity:
            return False
        self._queue.append(resp)
        if self.on_ready is not None:
            self.on_ready()
        return True

    def _push_ctrl(self, resp: WatchResponse) -> None:
        if self.closed:
            return
        self._queue.append(resp)
        if self.on_ready is not None:
            self.on_ready()

    def drain(self) -> list[WatchResponse]:
        """Take every queued response, oldest first. Watchers that waited for room are retried
        by the next sync_step (on_work is called)."""
        out = list(self._queue)
        self._queue.clear()
        if self._blocked and out:
            self._blocked = False
            self.ws._wake()
        return out
