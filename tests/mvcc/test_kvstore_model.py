"""Property test: KVStore against a plain in-memory model of etcd's MVCC semantics.

The model keeps the whole key space at every revision. Two stores get the same operations: one
finishes every compaction at once, the other runs it a few records at a time (and is reopened from
its backend mid-way), so their HashKV results must agree as well as their reads.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from petcd.backend import Backend
from petcd.mvcc import CompactedError, FutureRevError, KVStore, RangeOptions
from petcd.proto.mvccpb import kv_pb2 as mvccpb

KEYS = [b"a", b"ab", b"b", b"b\x00", b"c", b"d", b"e"]
ENDS = [b"", b"", b"\x00", b"ab", b"b\x00", b"c", b"e", b"z", b"a"]
keys = st.sampled_from(KEYS)
ends = st.sampled_from(ENDS)
values = st.binary(max_size=6)


@dataclass(frozen=True)
class Rec:
    value: bytes
    create: int
    mod: int
    ver: int
    lease: int


State = dict[bytes, Rec]


def in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if end == b"":
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


def as_tuple(kv: mvccpb.KeyValue) -> tuple[bytes, bytes, int, int, int, int]:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def rec_tuple(k: bytes, r: Rec) -> tuple[bytes, bytes, int, int, int, int]:
    return (k, r.value, r.create, r.mod, r.ver, r.lease)


def model_range(
    state: State, key: bytes, end: bytes, limit: int
) -> tuple[list[tuple[bytes, bytes, int, int, int, int]], int]:
    found = [rec_tuple(k, state[k]) for k in sorted(state) if in_range(k, key, end)]
    return (found[:limit] if limit > 0 else found), len(found)


op = st.one_of(
    st.tuples(st.just("put"), keys, values, st.sampled_from([0, 0, 7])),
    st.tuples(st.just("del"), keys, ends),
    st.tuples(st.just("range"), keys, ends, st.integers(0, 3)),
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class KVStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="petcd-mvcc-")
        self.clock = Clock()
        self.be_a = self._backend("a")
        self.be_b = self._backend("b")
        self.a = KVStore(self.be_a, compaction_batch=1)
        self.b = KVStore(self.be_b)
        # A new store is at revision 1 (as etcd's): the first change gets revision 2.
        self.history: list[State] = [{}, {}]
        self.events: list[list[tuple[int, bytes, int]]] = [[], []]  # per revision: (type, key, mod)
        self.compact_rev = 0
        self.applied = 0

    def _backend(self, name: str) -> Backend:
        return Backend(f"{self.dir}/{name}/db", batch_interval=0.1, batch_limit=8, clock=self.clock)

    def teardown(self) -> None:
        for be in (self.be_a, self.be_b):
            be.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def cur(self) -> int:
        return len(self.history) - 1

    def _check_range(
        self, got: object, state: State, key: bytes, end: bytes, limit: int, count_only: bool, cur: int
    ) -> None:
        want, total = model_range(state, key, end, limit)
        assert got.count == total  # type: ignore[attr-defined]
        assert got.rev == cur  # type: ignore[attr-defined]
        if count_only:
            assert got.kvs == []  # type: ignore[attr-defined]
        else:
            assert [as_tuple(kv) for kv in got.kvs] == want  # type: ignore[attr-defined]

    @rule(ops=st.lists(op, max_size=5), tick=st.booleans())
    def txn(self, ops: list[tuple[object, ...]], tick: bool) -> None:
        self.applied += 1
        begin = self.cur
        main = begin + 1
        work: State = dict(self.history[-1])
        evs: list[tuple[int, bytes, int]] = []
        results = []
        for store in (self.a, self.b):
            with store.write() as txn:
                out = []
                for o in ops:
                    if o[0] == "put":
                        out.append(as_tuple(txn.put(o[1], o[2], lease=o[3])))  # type: ignore[arg-type]
                    elif o[0] == "del":
                        out.append([as_tuple(kv) for kv in txn.delete_range(o[1], o[2])])  # type: ignore[arg-type]
                    else:
                        r = txn.range(o[1], o[2], RangeOptions(limit=o[3]))  # type: ignore[arg-type]
                        out.append(([as_tuple(kv) for kv in r.kvs], r.count, r.rev))
                txn.set_consistent_index(self.applied, term=1 + self.applied // 5)
                changes = [(ev.type, ev.kv.key, ev.kv.mod_revision) for ev in txn.changes]
            results.append((out, changes))
            store.backend.commit_if_due()
        want = []
        for o in ops:
            if o[0] == "put":
                k, v, lease = o[1], o[2], o[3]
                old = work.get(k)  # type: ignore[call-overload]
                rec = Rec(v, old.create if old else main, main, old.ver + 1 if old else 1, lease)  # type: ignore[arg-type]
                work[k] = rec  # type: ignore[index]
                evs.append((mvccpb.Event.PUT, k, main))  # type: ignore[arg-type]
                want.append(rec_tuple(k, rec))  # type: ignore[arg-type]
            elif o[0] == "del":
                gone = [k for k in sorted(work) if in_range(k, o[1], o[2])]  # type: ignore[arg-type]
                want.append([rec_tuple(k, work[k]) for k in gone])
                for k in gone:
                    del work[k]
                    evs.append((mvccpb.Event.DELETE, k, main))
            else:
                rev_now = main if evs else begin
                found, total = model_range(work, o[1], o[2], o[3])  # type: ignore[arg-type]
                want.append((found, total, rev_now))
        for out, changes in results:
            assert out == want
            assert changes == evs
        if evs:
            self.history.append(work)
            self.events.append(evs)
        if tick:
            self.clock.now += 0.1

    @rule(key=keys, end=ends, back=st.integers(-2, 12), limit=st.integers(-1, 4), count_only=st.booleans())
    def range(self, key: bytes, end: bytes, back: int, limit: int, count_only: bool) -> None:
        rev = -1 if back == 12 else self.cur - back
        opts = RangeOptions(limit=limit, rev=rev, count_only=count_only)
        for store in (self.a, self.b):
            if rev > self.cur:
                try:
                    store.range(key, end, opts)
                    raise AssertionError("expected FutureRevError")
                except FutureRevError as e:
                    assert str(e) == "mvcc: required revision is a future revision"
                continue
            at = self.cur if rev <= 0 else rev
            if at < self.compact_rev:
                try:
                    store.range(key, end, opts)
                    raise AssertionError("expected CompactedError")
                except CompactedError as e:
                    assert str(e) == "mvcc: required revision has been compacted"
                continue
            got = store.range(key, end, opts)
            self._check_range(got, self.history[at], key, end, limit, count_only, self.cur)

    @rule(back=st.integers(-1, 8), steps=st.integers(0, 2))
    def compact(self, back: int, steps: int) -> None:
        rev = self.cur - back
        for store in (self.a, self.b):
            if rev <= self.compact_rev:
                try:
                    store.compact(rev)
                    raise AssertionError("expected CompactedError")
                except CompactedError:
                    pass
            elif rev > self.cur:
                try:
                    store.compact(rev)
                    raise AssertionError("expected FutureRevError")
                except FutureRevError:
                    pass
            else:
                store.compact(rev)
        if self.compact_rev < rev <= self.cur:
            self.compact_rev = rev
            self.b.finish_compaction()
            assert not self.b.compaction_pending
            for _ in range(steps):
                self.a.compact_step()

    @precondition(lambda self: self.a.compaction_pending)
    @rule()
    def compact_step(self) -> None:
        self.a.compact_step()

    @precondition(lambda self: self.a.compaction_pending)
    @rule(back=st.integers(0, 8))
    def hash_kv_while_compacting(self, back: int) -> None:
        """HashKV must not depend on how far a compaction has got."""
        self.hash_kv(back)

    @rule(store_b=st.booleans())
    def reopen(self, store_b: bool) -> None:
        """A restart: the batch is committed (as the server does before exiting) and the store is
        rebuilt from the backend; an unfinished compaction is finished on open."""
        self.be_a.force_commit()
        self.be_a.close()
        self.be_a = self._backend("a")
        self.a = KVStore(self.be_a, compaction_batch=1)
        assert not self.a.compaction_pending
        if store_b:
            self.be_b.force_commit()
            self.be_b.close()
            self.be_b = self._backend("b")
            self.b = KVStore(self.be_b)
        for store in (self.a, self.b):
            assert store.consistent_index == self.applied
            assert store.term == (1 + self.applied // 5 if self.applied else 0)

    @rule(back=st.integers(0, 8))
    def hash_kv(self, back: int) -> None:
        rev = 0 if back == 0 else self.cur - back
        if rev > self.cur or (rev and rev <= self.compact_rev):
            return
        ha = self.a.hash_kv(rev)
        hb = self.b.hash_kv(rev)
        assert ha == hb
        assert ha[1:] == (self.cur, self.compact_rev or -1)

    @rule(back=st.integers(-1, 8))
    def events(self, back: int) -> None:
        start = self.cur - back
        if start <= self.compact_rev or start > self.cur + 1:
            return
        want = [e for rev in range(start, self.cur + 1) for e in self.events[rev]]
        for store in (self.a, self.b):
            got = [(ev.type, ev.kv.key, ev.kv.mod_revision) for ev in store.events(start)]
            assert got == want

    @invariant()
    def revisions_and_current_state(self) -> None:
        for store in (self.a, self.b):
            assert store.rev == self.cur
            assert store.compact_rev == self.compact_rev
            got = store.range(b"\x00", b"\x00")
            self._check_range(got, self.history[-1], b"\x00", b"\x00", 0, False, self.cur)


KVStoreMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestKVStoreModel = KVStoreMachine.TestCase
