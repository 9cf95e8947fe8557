"""The lessor: leases, the keys attached to them, their expiry and checkpoints (etcd's lessor).

How it works
------------
Two kinds of state live here.

* Replicated state, changed only by applying committed raft entries (so every member holds the
  same): the leases ``{id -> Lease(id, ttl, remaining_ttl)}``, persisted one record per lease in
  the backend's ``lease`` bucket in the same backend batch as the entry's consistent index, and
  which keys are attached to which lease. Attachments are not persisted: the KVStore already
  records each key's lease, so they are rebuilt from the live keys on open (``recover``).
* Primary-only state: each lease's expiry time on the injected clock. Only the leader (the
  *primary*) tracks time. A member that is not primary keeps every lease alive forever
  (expiry = inf); ``promote(extend)`` (on becoming leader, once it has applied its first entry of
  the new term) starts every lease's clock afresh at ``ttl`` (or the checkpointed
  ``remaining_ttl``) plus ``extend``; ``demote()`` stops the clocks again. Expired leases are not
  revoked here: ``expired_leases()`` hands them to the leader's expiry loop, which proposes a
  LeaseRevoke through raft, so every member deletes the same keys at the same revision.

Checkpoints: without them a leader change restarts every lease at its full TTL, so a lease kept
alive by leader changes never expires. The primary therefore schedules, for each lease whose TTL
is longer than the checkpoint interval, a checkpoint of its remaining TTL every interval
(``checkpoints_due()``); the leader proposes them, and applying one records ``remaining_ttl`` in
the lease record, which ``promote`` and a restart then start from. A keep-alive resets the TTL,
so a checkpointed ``remaining_ttl`` must be cleared through raft first (``needs_checkpoint_clear``).

Expiry bookkeeping is a heap of ``(time, id, generation)``; a refresh bumps the lease's generation
and pushes a new entry, and stale entries are skipped when popped. A lease handed out as expired
is offered again only after ``expired_retry_interval`` (its revoke proposal may have been lost).

Nothing here is thread-safe: it runs on the server's apply thread (the event loop), as does the
KVStore.
"""

from __future__ import annotations

import heapq
import logging
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from petcd import errors
from petcd.backend import LEASE, Backend
from petcd.clock import Clock
from petcd.mvcc import KVStore, RangeOptions
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.leasepb import lease_pb2 as leasepb
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from petcd.proto.serverpb import internal_pb2 as serverpb

log = logging.getLogger("petcd.lease")

NO_LEASE = 0
# etcd's MaxLeaseTTL: larger TTLs are refused (LeaseTTLTooLargeError).
MAX_LEASE_TTL = 9_000_000_000
# How many revocations per second the leader aims for; promote() spreads out leases that
# would otherwise expire together beyond 3/4 of it (etcd's leaseRevokeRate).
REVOKE_RATE = 1000
# TimeToLive's answer for a lease with no clock (not primary): Go's MaxInt64 nanoseconds in seconds.
FOREVER_SECONDS = (2**63 - 1) // 1_000_000_000
DEFAULT_CHECKPOINT_INTERVAL = 300.0  # etcd's default lease checkpoint interval (5 min)
DEFAULT_EXPIRED_RETRY_INTERVAL = 3.0  # etcd's expired-lease retry interval
_ID = struct.Struct(">q")
_RECOVER_BATCH = 10_000
_EVENT_PUT = mvccpb.Event.PUT


class NotPrimaryError(Exception):
    """This member's lessor does not track time (it is not the leader, or not promoted yet)."""


class LeaseExpiredError(Exception):
    """The lease has expired and awaits its revocation through raft."""


def min_lease_ttl(election_ticks: int, heartbeat_ms: int) -> int:
    """etcd's minimum lease TTL in whole seconds: ceil((3 * election_ticks / 2) heartbeats),
    the integer division as etcd does it. A shorter lease could expire during a leader
    election, before the new leader can receive its keep-alives."""
    ms = ((3 * election_ticks) // 2) * heartbeat_ms
    return max(1, -(-ms // 1000))


def lease_key(lease_id: int) -> bytes:
    """The lease bucket key: the id as 8 big-endian bytes (two's complement for negative ids)."""
    return _ID.pack(lease_id)


@dataclass(slots=True, eq=False)
class Lease:
    id: int
    ttl: int  # granted TTL in seconds, after the minimum-TTL rule
    remaining_ttl: int = 0  # checkpointed remaining TTL; 0 = none
    keys: set[bytes] = field(default_factory=set)
    expiry: float = math.inf  # on the lessor's clock; inf while not primary
    gen: int = 0  # bumped on every refresh; heap entries of older generations are stale

    def start_ttl(self) -> int:
        """What the clock restarts from on promote or restart."""
        return self.remaining_ttl if self.remaining_ttl > 0 else self.ttl

    def record(self) -> bytes:
        return leasepb.Lease(id=self.id, ttl=self.ttl, remaining_ttl=self.remaining_ttl).SerializeToString()


RevokeWaiter = Callable[[bool], None]


class Lessor:
    """See the module docstring. ``store`` (if given) is recovered from at once; ``apply``
    may pass another store (after a snapshot restore call ``recover`` with it)."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        store: KVStore | None = None,
        *,
        min_ttl: int = 1,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        checkpointing: bool = True,
        expired_retry_interval: float = DEFAULT_EXPIRED_RETRY_INTERVAL,
    ) -> None:
        self._be = backend
        self._clock = clock.now
        self.min_ttl = min_ttl
        self.checkpoint_interval = checkpoint_interval
        self.checkpointing = checkpointing
        self.expired_retry_interval = expired_retry_interval
        self._leases: dict[int, Lease] = {}
        self._key_lease: dict[bytes, int] = {}
        self._primary = False
        self._expiry_heap: list[tuple[float, int, int]] = []
        self._cp_heap: list[tuple[float, int]] = []
        self._cp_scheduled: set[int] = set()
        self._revoke_waiters: dict[int, list[RevokeWaiter]] = {}
        self._primary_waiters: list[Callable[[], None]] = []
        self._store = store
        self._load(store)

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, store: KVStore) -> None:
        """Reload every lease from the backend and rebuild attachments from the store's live keys
        (on open, and after the backend was replaced by a snapshot)."""
        self._store = store
        self._load(store)

    def _load(self, store: KVStore | None) -> None:
        self._leases.clear()
        self._key_lease.clear()
        self._expiry_heap.clear()
        self._cp_heap.clear()
        self._cp_scheduled.clear()
        for key, value in self._be.range(LEASE):
            rec = leasepb.Lease.FromString(value)
            if _ID.unpack(key)[0] != rec.id:
                log.warning("lease record under key %s holds id %x; using the record", key.hex(), rec.id)
            self._leases[rec.id] = Lease(rec.id, rec.ttl, rec.remaining_ttl)
        if store is not None:
            self._attach_live_keys(store)
        if self._primary:
            now = self._clock()
            for lease in self._leases.values():
                self._refresh(lease, now, 0.0)
                self._schedule_checkpoint(lease, now)

    def _attach_live_keys(self, store: KVStore) -> None:
        start = b"\x00"
        while True:
            kvs = store.range(start, b"\x00", RangeOptions(limit=_RECOVER_BATCH)).kvs
            for kv in kvs:
                if kv.lease != NO_LEASE:
                    lease = self._leases.get(kv.lease)
                    if lease is None:
                        # etcd logs this too: the revoke's key deletes and the lease record
                        # share a backend batch, so it means the store was edited by hand.
                        log.warning("key %r is attached to lease %x which does not exist", kv.key, kv.lease)
                        continue
                    lease.keys.add(kv.key)
                    self._key_lease[kv.key] = kv.lease
            if len(kvs) < _RECOVER_BATCH:
                return
            start = kvs[-1].key + b"\x00"

    # -- queries -------------------------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self._primary

    def exists(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def get(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def lease_of(self, key: bytes) -> int:
        """The lease a key is attached to (NO_LEASE if none)."""
        return self._key_lease.get(key, NO_LEASE)

    def __len__(self) -> int:
        return len(self._leases)

    def leases(self) -> list[int]:
        """Every lease id, soonest expiry first (by id among equals, e.g. when not primary)."""
        return [lease.id for lease in sorted(self._leases.values(), key=lambda le: (le.expiry, le.id))]

    def time_to_live(self, lease_id: int, keys: bool = False) -> tuple[int, int, list[bytes]]:
        """(granted TTL, remaining whole seconds, attached keys if asked, sorted).
        LeaseNotFoundError if there is no such lease. The remaining time truncates toward zero
        (an expired lease awaiting revocation shows 0 or less), as etcd reports it; a member
        that is not primary has no clock and reports FOREVER_SECONDS."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFoundError()
        if lease.expiry == math.inf:
            remaining = FOREVER_SECONDS
        else:
            remaining = int(lease.expiry - self._clock())
        return lease.ttl, remaining, sorted(lease.keys) if keys else []

    def remaining(self, lease_id: int) -> float:
        """Seconds until expiry on the clock (inf when not primary); LeaseNotFoundError."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFoundError()
        return lease.expiry - self._clock()

    # -- applying committed requests -----------------------------------------------------------

    def apply(self, req: serverpb.InternalRequest, store: KVStore) -> object:
        """Apply a committed lease_grant / lease_revoke / lease_checkpoint request (the server's
        apply loop records the entry's consistent index in the same backend batch). Returns the
        response (header.revision set; the server fills the rest) or raises a petcd.errors error."""
        self._store = store
        kind = req.WhichOneof("request")
        if kind == "lease_revoke":
            self.revoke(req.lease_revoke.ID, store)
            revoke_resp = pb.LeaseRevokeResponse()
            revoke_resp.header.revision = store.rev
            return revoke_resp
        if kind == "lease_grant":
            lease = self.grant(req.lease_grant.ID, req.lease_grant.TTL)
            grant_resp = pb.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl)
            grant_resp.header.revision = store.rev
            return grant_resp
        if kind == "lease_checkpoint":
            for cp in req.lease_checkpoint.checkpoints:
                self.checkpoint(cp.ID, cp.remaining_TTL)
            cp_resp = pb.LeaseCheckpointResponse()
            cp_resp.header.revision = store.rev
            return cp_resp
        raise ValueError(f"lessor cannot apply a {kind} request")

    def grant(self, lease_id: int, ttl: int) -> Lease:
        """Create a lease (applied state). TTLs below min_ttl are raised to it; the primary
        starts its clock, other members keep it forever."""
        if lease_id == NO_LEASE:
            raise errors.LeaseNotFoundError()
        if ttl > MAX_LEASE_TTL:
            raise errors.LeaseTTLTooLargeError()
        if lease_id in self._leases:
            raise errors.LeaseExistsError()
        lease = Lease(lease_id, max(ttl, self.min_ttl))
        self._leases[lease_id] = lease
        if self._primary:
            now = self._clock()
            self._refresh(lease, now, 0.0)
            self._schedule_checkpoint(lease, now)
        self._be.put(LEASE, lease_key(lease_id), lease.record())
        return lease

    def revoke(self, lease_id: int, store: KVStore | None = None) -> None:
        """Delete the lease and every key attached to it in one store write txn (one revision,
        none if no key is attached), with the lease record removed in the same backend batch.
        Store listeners (watchers) see
        the deletes like any write's changes."""
        lease = self._leases.get(lease_id)
        if store is None:
            store = self._store
        if store is None:
            raise RuntimeError("lessor: revoke needs a KVStore")
        if lease is None:
            raise errors.LeaseNotFoundError()
        with store.write() as txn:
            # sorted, so every member deletes in the same order and the backends hash the same
            for key in sorted(lease.keys):
                # a key whose lease changed behind our back (a missed detach) is not ours to delete
                live = txn.range(key, b"", RangeOptions()).kvs
                if live and live[0].lease == lease_id:
                    txn.delete_range(key, b"")
            self._be.delete(LEASE, lease_key(lease_id))
        for key in lease.keys:
            if self._key_lease.get(key) == lease_id:
                del self._key_lease[key]
        del self._leases[lease_id]
        self._cp_scheduled.discard(lease_id)
        for waiter in self._revoke_waiters.pop(lease_id, []):
            waiter(True)

    def checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        """Record a lease's remaining TTL (applied state); unknown leases are ignored (revoked
        after the checkpoint was proposed). Does not move the expiry: promote and restart use it."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return
        lease.remaining_ttl = max(0, remaining_ttl)
        self._be.put(LEASE, lease_key(lease_id), lease.record())
        if self._primary:
            self._schedule_checkpoint(lease, self._clock())

    # -- key attachments (called by the KV applier) --------------------------------------------

    def attach(self, lease_id: int, key: bytes) -> None:
        """Attach key to lease (a put with this lease). Moving a key from another lease detaches
        it there. LeaseNotFoundError for a missing lease (check before writing)."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFoundError()
        old = self._key_lease.get(key, NO_LEASE)
        if old == lease_id:
            return
        if old != NO_LEASE:
            self.detach(old, key)
        lease.keys.add(key)
        self._key_lease[key] = lease_id

    def detach(self, lease_id: int, key: bytes) -> None:
        """Detach key from lease (the key was deleted or put with another or no lease).
        A no-op if they are not attached."""
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)
        if self._key_lease.get(key) == lease_id:
            del self._key_lease[key]

    def apply_changes(self, events: Iterable[mvccpb.Event]) -> None:
        """Update attachments from a write txn's changes (WriteTxn.changes): a PUT attaches the
        key to its lease (detaching it from a previous one), a DELETE detaches it. Equivalent to
        calling attach/detach for every op, in order."""
        for ev in events:
            key = ev.kv.key
            old = self._key_lease.get(key, NO_LEASE)
            new = ev.kv.lease if ev.type == _EVENT_PUT else NO_LEASE
            if old == new:
                continue
            if old != NO_LEASE:
                self.detach(old, key)
            if new != NO_LEASE:
                if new in self._leases:
                    self.attach(new, key)
                else:
                    log.warning("put of %r with lease %x which does not exist", key, new)

    # -- primary only: keep-alive, expiry, checkpoints -----------------------------------------

    def renew(self, lease_id: int) -> int:
        """Keep-alive: restart the lease's clock at its full TTL and return the TTL.
        NotPrimaryError when not primary, LeaseNotFoundError for a missing lease,
        LeaseExpiredError for one that expired and awaits revocation (wait for it with
        add_revoke_waiter: a keep-alive must not revive a lease whose revoke is under way)."""
        if not self._primary:
            raise NotPrimaryError
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFoundError()
        now = self._clock()
        if lease.expiry <= now:
            raise LeaseExpiredError
        lease.expiry = now + lease.ttl
        lease.gen += 1
        heapq.heappush(self._expiry_heap, (lease.expiry, lease.id, lease.gen))
        self._maybe_shrink_heap()
        self._schedule_checkpoint(lease, now)
        return lease.ttl

    def needs_checkpoint_clear(self, lease_id: int) -> bool:
        """True if a keep-alive must first propose a checkpoint of remaining_ttl 0: otherwise a
        leader change or restart would restart the lease from the stale checkpoint, shorter than
        the TTL the client just renewed."""
        lease = self._leases.get(lease_id)
        return self.checkpointing and lease is not None and lease.remaining_ttl > 0

    def add_revoke_waiter(self, lease_id: int, waiter: RevokeWaiter) -> None:
        """waiter(True) once the lease is revoked, waiter(False) if this lessor is demoted first
        (the revoke may then never happen here). Called at once with True if it is already gone."""
        if lease_id not in self._leases:
            waiter(True)
            return
        self._revoke_waiters.setdefault(lease_id, []).append(waiter)

    def add_primary_waiter(self, waiter: Callable[[], None]) -> None:
        """waiter() once, at the next promote (a keep-alive on a new leader waits for it)."""
        self._primary_waiters.append(waiter)

    def remove_primary_waiter(self, waiter: Callable[[], None]) -> None:
        if waiter in self._primary_waiters:
            self._primary_waiters.remove(waiter)

    def remove_revoke_waiter(self, lease_id: int, waiter: RevokeWaiter) -> None:
        waiters = self._revoke_waiters.get(lease_id)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._revoke_waiters[lease_id]

    def expired_leases(self, limit: int = REVOKE_RATE // 2) -> list[int]:
        """Up to limit ids of leases whose expiry has passed, for the leader to revoke through
        raft. A lease returned here is returned again after expired_retry_interval if it is
        still there (its revoke proposal may have failed)."""
        if not self._primary:
            return []
        now = self._clock()
        out: list[int] = []
        heap = self._expiry_heap
        while heap and len(out) < limit:
            when, lease_id, gen = heap[0]
            if when > now:
                break
            heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is None or lease.gen != gen:
                continue  # revoked, or refreshed since this entry was pushed
            if lease.expiry > now:
                heapq.heappush(heap, (lease.expiry, lease_id, gen))
                continue
            out.append(lease_id)
            heapq.heappush(heap, (now + self.expired_retry_interval, lease_id, gen))
        return out

    def checkpoints_due(self, limit: int = 1000) -> list[pb.LeaseCheckpoint]:
        """Up to limit checkpoints (id, remaining whole seconds rounded up) whose time has come,
        for the leader to propose as one LeaseCheckpointRequest."""
        if not (self._primary and self.checkpointing):
            return []
        now = self._clock()
        out: list[pb.LeaseCheckpoint] = []
        heap = self._cp_heap
        while heap and len(out) < limit:
            when, lease_id = heap[0]
            if when > now:
                break
            heapq.heappop(heap)
            self._cp_scheduled.discard(lease_id)
            lease = self._leases.get(lease_id)
            if lease is None or lease.expiry <= now:
                continue
            remaining = math.ceil(lease.expiry - now)
            if remaining >= lease.ttl:
                # nothing to save yet (renewed within the last second): look again later
                self._schedule_checkpoint(lease, now)
                continue
            out.append(pb.LeaseCheckpoint(ID=lease_id, remaining_TTL=remaining))
        return out

    def promote(self, extend: float) -> None:
        """Become primary: every lease expires start_ttl() + extend seconds from now (extend
        covers the election that made us leader, during which nobody could keep leases alive).
        Many leases due in the same second are spread out so revocations stay under 3/4 of
        REVOKE_RATE per second."""
        self._primary = True
        waiters, self._primary_waiters = self._primary_waiters, []
        for waiter in waiters:
            waiter()
        now = self._clock()
        self._expiry_heap.clear()
        self._cp_heap.clear()
        self._cp_scheduled.clear()
        for lease in self._leases.values():
            self._refresh(lease, now, extend)
        if len(self._leases) >= REVOKE_RATE:
            self._spread_expiries(now, extend)
        for lease in self._leases.values():
            self._schedule_checkpoint(lease, now)

    def _spread_expiries(self, now: float, extend: float) -> None:
        ordered = sorted(self._leases.values(), key=lambda le: (le.expiry, le.id))
        target = (3 * REVOKE_RATE) // 4
        base = ordered[0].expiry - now
        window_end = base + 1.0
        count = 0
        for lease in ordered:
            remaining = lease.expiry - now
            if remaining > window_end:
                base, window_end, count = remaining, remaining + 1.0, 1
                continue
            count += 1
            if count <= target:
                continue
            # past the rate in this window: push it back, less the head start it already has
            delay = count / target - (remaining - base)
            window_end = base + delay
            self._refresh(lease, now, delay + extend)

    def demote(self) -> None:
        """Stop being primary: leases live forever until the next promote. Pending keep-alives
        waiting for a revocation are told it may not come."""
        self._primary = False
        for lease in self._leases.values():
            lease.expiry = math.inf
            lease.gen += 1
        self._expiry_heap.clear()
        self._cp_heap.clear()
        self._cp_scheduled.clear()
        waiters, self._revoke_waiters = self._revoke_waiters, {}
        for ws in waiters.values():
            for waiter in ws:
                waiter(False)

    # -- internals -----------------------------------------------------------------------------

    def _refresh(self, lease: Lease, now: float, extend: float) -> None:
        lease.expiry = now + extend + lease.start_ttl()
        lease.gen += 1
        heapq.heappush(self._expiry_heap, (lease.expiry, lease.id, lease.gen))

    def _schedule_checkpoint(self, lease: Lease, now: float) -> None:
        if not self.checkpointing or lease.id in self._cp_scheduled:
            return
        if lease.start_ttl() > self.checkpoint_interval or lease.ttl > self.checkpoint_interval:
            self._cp_scheduled.add(lease.id)
            heapq.heappush(self._cp_heap, (now + self.checkpoint_interval, lease.id))

    def _maybe_shrink_heap(self) -> None:
        # every keep-alive pushes an entry; drop the stale ones once they dominate
        heap = self._expiry_heap
        if len(heap) > 2 * len(self._leases) + 1024:
            leases = self._leases
            live = [e for e in heap if (le := leases.get(e[1])) is not None and le.gen == e[2]]
            heapq.heapify(live)
            self._expiry_heap = live


__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_EXPIRED_RETRY_INTERVAL",
    "FOREVER_SECONDS",
    "MAX_LEASE_TTL",
    "NO_LEASE",
    "REVOKE_RATE",
    "Lease",
    "LeaseExpiredError",
    "Lessor",
    "NotPrimaryError",
    "lease_key",
    "min_lease_ttl",
]
