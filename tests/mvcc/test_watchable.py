"""The watchable store against a real KVStore on a temporary LMDB backend."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from petcd.backend import Backend
from petcd.mvcc import KVStore
from petcd.mvcc.watchable import (
    DuplicateWatchIDError,
    EmptyWatcherRangeError,
    State,
    WatchableStore,
    WatchOptions,
    WatchResponse,
    WatchStream,
)
from petcd.proto.mvccpb import kv_pb2 as mvccpb

PUT = mvccpb.Event.PUT
DELETE = mvccpb.Event.DELETE


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KVStore]:
    be = Backend(tmp_path / "db", map_size=64 << 20)
    try:
        yield KVStore(be)
    finally:
        be.close()


def put(store: KVStore, *pairs: tuple[bytes, bytes]) -> int:
    with store.write() as t:
        for k, v in pairs:
            t.put(k, v)
    return store.rev


def delete(store: KVStore, key: bytes, end: bytes = b"") -> int:
    with store.write() as t:
        t.delete_range(key, end)
    return store.rev


def evs(resp: WatchResponse) -> list[tuple[str, bytes, int]]:
    return [("PUT" if e.type == PUT else "DEL", e.kv.key, e.kv.mod_revision) for e in resp.events]


def events_of(stream: WatchStream, watch_id: int | None = None) -> list[WatchResponse]:
    return [r for r in stream.drain() if r.events and (watch_id is None or r.watch_id == watch_id)]


def settle(ws: WatchableStore, streams: list[WatchStream] | None = None, limit: int = 10_000) -> None:
    """Run sync steps until nothing is left to do (draining the given streams meanwhile is the
    caller's business)."""
    for _ in range(limit):
        if not ws.sync_step():
            return
    raise AssertionError("sync did not settle")


# -- creating and live delivery ---------------------------------------------------------------


def test_created_first_and_auto_ids(store: KVStore) -> None:
    ws = WatchableStore(store)
    s = ws.new_stream()
    w0 = s.watch(b"a")
    w5 = s.watch(b"b", watch_id=5)
    w1 = s.watch(b"c")
    assert (w0.id, w5.id, w1.id) == (0, 5, 1)
    with pytest.raises(DuplicateWatchIDError):
        s.watch(b"d", watch_id=5)
    with pytest.raises(EmptyWatcherRangeError):
        s.watch(b"z", b"a")
    out = s.drain()
    assert [(r.watch_id, r.created, r.canceled) for r in out] == [
        (0, True, False),
        (5, True, False),
        (1, True, False),
        (-1, True, True),
        (-1, True, True),
    ]
    assert out[3].cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
    assert out[4].cancel_reason == "mvcc: watcher range is empty"
    assert all(r.revision == 1 for r in out)


def test_synced_key_range_prefix_fromkey(store: KVStore) -> None:
    ws = WatchableStore(store)
    s = ws.new_stream()
    key = s.watch(b"foo")
    rng = s.watch(b"foo", b"fop")  # the prefix "foo"
    frm = s.watch(b"g", b"\x00")
    allk = s.watch(b"\x00", b"\x00")
    s.drain()
    r1 = put(store, (b"foo", b"1"), (b"foo1", b"2"), (b"h", b"3"), (b"a", b"4"))
    r2 = delete(store, b"foo", b"fop")
    out = s.drain()
    by_id: dict[int, list[WatchResponse]] = {}
    for r in out:
        by_id.setdefault(r.watch_id, []).append(r)
    assert [evs(r) for r in by_id[key.id]] == [[("PUT", b"foo", r1)], [("DEL", b"foo", r2)]]
    assert [evs(r) for r in by_id[rng.id]] == [
        [("PUT", b"foo", r1), ("PUT", b"foo1", r1)],
        [("DEL", b"foo", r2), ("DEL", b"foo1", r2)],
    ]
    assert [evs(r) for r in by_id[frm.id]] == [[("PUT", b"h", r1)]]
    assert evs(by_id[allk.id][0]) == [
        ("PUT", b"foo", r1),
        ("PUT", b"foo1", r1),
        ("PUT", b"h", r1),
        ("PUT", b"a", r1),
    ]
    # one response per txn, header revision = the txn's revision
    assert [r.revision for r in by_id[rng.id]] == [r1, r2]
    delete_kv = by_id[key.id][1].events[0].kv
    assert (delete_kv.key, delete_kv.mod_revision, delete_kv.create_revision, delete_kv.value) == (
        b"foo",
        r2,
        0,
        b"",
    )


def test_future_start_revision(store: KVStore) -> None:
    ws = WatchableStore(store)
    s = ws.new_stream()
    cur = store.rev
    w = s.watch(b"k", start_rev=cur + 3)
    assert w.state is State.SYNCED
    s.drain()
    put(store, (b"k", b"1"))
    put(store, (b"k", b"2"))
    r3 = put(store, (b"k", b"3"))
    assert [evs(r) for r in events_of(s)] == [[("PUT", b"k", r3)]]


def test_filters(store: KVStore) -> None:
    ws = WatchableStore(store)
    s = ws.new_stream()
    noput = s.watch(b"k", opts=WatchOptions(no_put=True))
    nodel = s.watch(b"k", opts=WatchOptions(no_delete=True))
    s.drain()
    r1 = put(store, (b"k", b"1"))
    r2 = delete(store, b"k")
    out = events_of(s)
    assert [(r.watch_id, evs(r)) for r in out] == [(nodel.id, [("PUT", b"k", r1)]), (noput.id, [("DEL", b"k", r2)])]
    # the same from history
    s2 = ws.new_stream()
    a = s2.watch(b"k", start_rev=r1, opts=WatchOptions(no_put=True))
    b = s2.watch(b"k", start_rev=r1, opts=WatchOptions(no_delete=True))
    settle(ws)
    out = events_of(s2)
    assert sorted((r.watch_id, evs(r)[0][0]) for r in out) == sorted([(a.id, "DEL"), (b.id, "PUT")])


def test_prev_kv(store: KVStore) -> None:
    ws = WatchableStore(store)
    r1 = put(store, (b"k", b"1"))
    r2 = put(store, (b"k", b"2"))
    r3 = delete(store, b"k")
    s = ws.new_stream()
    s.watch(b"k", start_rev=r1, opts=WatchOptions(prev_kv=True))
    settle(ws)
    (resp,) = events_of(s)
    with_prev = ws.with_prev_kv(resp.events)
    assert [(e.kv.mod_revision, e.HasField("prev_kv")) for e in with_prev] == [(r1, False), (r2, True), (r3, True)]
    assert (with_prev[1].prev_kv.value, with_prev[1].prev_kv.mod_revision) == (b"1", r1)
    assert (with_prev[2].prev_kv.value, with_prev[2].prev_kv.mod_revision) == (b"2", r2)
    # the store's events are shared by every watcher: never modified in place
    assert not any(e.HasField("prev_kv") for e in resp.events)
    store.compact(r2)
    store.finish_compaction()
    # the version before r2 is compacted away: no prev_kv, as etcd
    after = ws.with_prev_kv(resp.events)
    assert [e.HasField("prev_kv") for e in after] == [False, False, True]


# -- history ------------------------------------------------------------------------------------


def test_catch_up_in_windows_then_synced(store: KVStore) -> None:
    ws = WatchableStore(store, batch_revs=3)
    first = put(store, (b"p/0", b"x"))
    for i in range(1, 8):
        put(store, (b"p/%d" % i, b"x"), (b"q", b"y"))
    s = ws.new_stream()
    w = s.watch(b"p/", b"p0", start_rev=first)
    assert w.state is State.UNSYNCED
    assert ws.has_work()
    s.drain()
    settle(ws)
    assert w.state is State.SYNCED and not ws.has_work()
    out = events_of(s)
    assert [[e[2] for e in evs(r)] for r in out] == [
        [first, first + 1, first + 2],
        [first + 3, first + 4, first + 5],
        [first + 6, first + 7],
    ]
    assert all(r.revision == store.rev for r in out)  # the store's revision when it was read
    r = put(store, (b"p/z", b"1"))
    assert [evs(x) for x in events_of(s)] == [[("PUT", b"p/z", r)]]


def test_writes_between_catch_up_steps_are_not_lost(store: KVStore) -> None:
    ws = WatchableStore(store, batch_revs=2)
    start = put(store, (b"k", b"0"))
    for i in range(5):
        put(store, (b"k", b"%d" % i))
    s = ws.new_stream()
    s.watch(b"k", start_rev=start)
    seen: list[int] = []
    while True:
        more = ws.sync_step()
        put(store, (b"k", b"w"))  # a write lands between every two steps
        seen += [e[2] for r in events_of(s) for e in evs(r)]
        if not more and not ws.has_work():
            break
    seen += [e[2] for r in events_of(s) for e in evs(r)]
    assert seen == list(range(start, store.rev + 1))


def test_compacted_start_revision(store: KVStore) -> None:
    ws = WatchableStore(store)
    r1 = put(store, (b"k", b"1"))
    r2 = put(store, (b"k2", b"1"))
    r3 = delete(store, b"k")
    r4 = put(store, (b"k2", b"2"))
    store.compact(r3)
    store.finish_compaction()
    s = ws.new_stream()
    below = s.watch(b"k", b"l", start_rev=r2)
    at = s.watch(b"k", b"l", start_rev=r3)
    s.drain()
    settle(ws)
    out = s.drain()
    comp = [r for r in out if r.watch_id == below.id]
    assert [(r.compact_revision, r.revision, r.events) for r in comp] == [(r3, 0, [])]
    assert below.state is State.COMPACTED
    # etcd cancels only a start revision *below* the compaction revision; at it, the delete of
    # k at r3 is gone with the compaction (as in etcd) and the put at r4 arrives
    assert [evs(r) for r in out if r.watch_id == at.id] == [[("PUT", b"k2", r4)]]
    # a compacted watcher keeps its id until canceled
    assert s.cancel(below.id)
    assert [(r.watch_id, r.canceled) for r in s.drain()] == [(below.id, True)]
    assert r1 < r2


def test_compaction_while_catching_up(store: KVStore) -> None:
    ws = WatchableStore(store, batch_revs=2)
    start = put(store, (b"k", b"0"))
    for i in range(9):
        put(store, (b"k", b"%d" % i))
    s = ws.new_stream()
    lagging = s.watch(b"k", start_rev=start)
    s2 = ws.new_stream()
    ahead = s2.watch(b"k", start_rev=start + 6)
    ws.sync_step()  # one window of history, from the lowest revision wanted
    assert lagging.min_rev == start + 2 and ahead.min_rev == start + 6
    store.compact(start + 5)  # above lagging's next revision, below ahead's
    store.finish_compaction()
    settle(ws)
    got = s.drain()
    assert [e[2] for r in got if r.events for e in evs(r)] == [start, start + 1]
    assert [r.compact_revision for r in got if r.compact_revision] == [start + 5]
    assert lagging.state is State.COMPACTED
    assert [e[2] for r in s2.drain() if r.events for e in evs(r)] == list(range(start + 6, store.rev + 1))
    assert ahead.state is State.SYNCED


# -- slow clients -------------------------------------------------------------------------------


def test_slow_stream_becomes_victim_without_blocking_others(store: KVStore) -> None:
    ws = WatchableStore(store)
    slow = ws.new_stream(capacity=2)
    fast = ws.new_stream(capacity=2)
    ws_slow = slow.watch(b"k")
    ws_fast = fast.watch(b"k")
    slow.drain()
    fast.drain()
    revs = []
    fast_seen: list[int] = []
    for i in range(20):
        revs.append(put(store, (b"k", b"%d" % i)))
        fast_seen += [e[2] for r in events_of(fast) for e in evs(r)]
        ws.sync_step()  # the slow stream is never drained here: nothing it can do
    assert fast_seen == revs
    assert ws_fast.state is State.SYNCED
    assert ws_slow.state is State.VICTIM
    assert len(slow) == 2
    assert ws.counts() == (1, 0, 1)
    slow_seen: list[int] = []
    for _ in range(100):
        slow_seen += [e[2] for r in events_of(slow) for e in evs(r)]
        if not ws.sync_step() and not len(slow):
            break
    assert slow_seen == revs  # every event, once, in order, though it fell behind
    assert ws_slow.state is State.SYNCED and ws.counts() == (2, 0, 0)


def test_progress(store: KVStore) -> None:
    ws = WatchableStore(store)
    put(store, (b"a", b"1"))
    s = ws.new_stream()
    synced = s.watch(b"k")
    s.drain()
    assert s.request_progress(synced.id)
    assert [(r.watch_id, r.revision, r.events) for r in s.drain()] == [(synced.id, store.rev, [])]
    # the whole-stream progress waits until every watcher has caught up
    lag = s.watch(b"a", start_rev=1)
    s.drain()
    assert not s.request_progress(lag.id)  # unsynced watchers get no progress (etcd)
    s.request_progress_all()
    assert s.drain() == []
    settle(ws)
    out = s.drain()
    assert [(r.watch_id, bool(r.events)) for r in out] == [(lag.id, True), (-1, False)]
    assert out[1].revision == store.rev
    # an empty stream answers at once, as etcd 3.4 does
    e = ws.new_stream()
    e.request_progress_all()
    assert [(r.watch_id, r.revision) for r in e.drain()] == [(-1, store.rev)]


def test_cancel_and_close_release_watchers(store: KVStore) -> None:
    ws = WatchableStore(store)
    s = ws.new_stream(capacity=1)
    a = s.watch(b"a")
    b = s.watch(b"b", start_rev=1)
    s.drain()
    put(store, (b"a", b"1"))
    put(store, (b"a", b"2"))  # does not fit: a is a victim
    assert a.state is State.VICTIM
    assert s.cancel(a.id)
    assert not s.cancel(a.id)
    out = s.drain()
    # the queued events of a canceled watcher are dropped, its canceled response is sent
    assert [(r.watch_id, r.canceled, bool(r.events)) for r in out] == [(a.id, True, False)]
    assert ws.counts() == (0, 1, 0)
    s.close()
    assert ws.counts() == (0, 0, 0)
    assert b.state is State.CANCELED
    put(store, (b"b", b"1"))
    assert s.drain() == []


# -- everything at once ---------------------------------------------------------------------------

KEYS = [b"a", b"ab", b"b", b"c", b"c/1", b"c/2", b"d"]
RANGES = [(b"a", b""), (b"c/", b"c0"), (b"b", b"\x00"), (b"\x00", b"\x00"), (b"ab", b"c/2"), (b"d", b"")]


@pytest.mark.parametrize("seed", range(8))
def test_random_histories(store: KVStore, seed: int) -> None:
    """Random writes, compactions, watchers from random revisions, clients reading at random:
    every watcher gets exactly the events of its range from its start revision, in order, once,
    a txn's events in one response -- or, if compaction overtook it, a prefix of them and then
    one compaction response."""
    rnd = random.Random(seed)
    ws = WatchableStore(store, batch_revs=rnd.choice([1, 2, 5, 1000]), max_watchers_per_sync=rnd.choice([1, 3, 512]))
    history: dict[int, list[tuple[int, bytes, int]]] = {}  # rev -> events (type, key, mod)

    def record(events: list[mvccpb.Event], rev: int) -> None:
        history[rev] = [(e.type, e.kv.key, e.kv.mod_revision) for e in events]

    store.add_listener(record)
    streams: list[WatchStream] = []
    watchers: list[tuple[WatchStream, int, bytes, bytes, int, WatchOptions]] = []
    got: dict[tuple[int, int], list[WatchResponse]] = {}
    compactions: set[int] = set()

    def drain(s: WatchStream) -> None:
        for r in s.drain():
            got.setdefault((id(s), r.watch_id), []).append(r)

    for _step in range(400):
        op = rnd.random()
        if op < 0.45:
            with store.write() as t:
                for k in rnd.sample(KEYS, rnd.randint(1, 3)):
                    if rnd.random() < 0.8:
                        t.put(k, b"%d" % rnd.randint(0, 9))
                    else:
                        t.delete_range(k)
        elif op < 0.5:
            k, e = rnd.choice(RANGES)
            with store.write() as t:
                t.delete_range(k, e)
        elif op < 0.6:
            if not streams or rnd.random() < 0.3:
                streams.append(ws.new_stream(capacity=rnd.choice([1, 2, 8, 128])))
            s = rnd.choice(streams)
            k, e = rnd.choice(RANGES)
            lo = max(1, store.compact_rev - 1)
            start = rnd.choice([0, rnd.randint(lo, store.rev + 2)])
            opts = WatchOptions(no_put=rnd.random() < 0.1, no_delete=rnd.random() < 0.1)
            cur = store.rev
            w = s.watch(k, e, start, opts=opts)
            watchers.append((s, w.id, k, e, start or cur + 1, opts))
        elif op < 0.63 and store.rev > 2:
            target = rnd.randint(store.compact_rev + 1, store.rev) if store.compact_rev < store.rev else 0
            if target:
                store.compact(target)
                compactions.add(target)
                if rnd.random() < 0.5:
                    store.finish_compaction()
                else:
                    store.compact_step(2)
        elif op < 0.85:
            ws.sync_step()
        elif streams:
            drain(rnd.choice(streams))
    store.finish_compaction()
    for _ in range(100_000):
        for s in streams:
            drain(s)
        if not ws.sync_step() and not any(len(s) for s in streams):
            break
    else:
        raise AssertionError("did not settle")

    for s, wid, k, e, start, opts in watchers:
        resps = got[(id(s), wid)]
        assert resps[0].created
        body = resps[1:]
        expected = [
            (t, key, mod)
            for rev in sorted(history)
            if rev >= start
            for (t, key, mod) in history[rev]
            if _in_range(key, k, e) and not (opts.no_put and t == PUT) and not (opts.no_delete and t == DELETE)
        ]
        delivered = [(ev.type, ev.kv.key, ev.kv.mod_revision) for r in body for ev in r.events]
        # a watcher at exactly a compaction revision may miss a delete at it (etcd compacts its
        # tombstone away and does not cancel the watcher); nothing else may be missing
        lost_ok = {x for x in expected if x[0] == DELETE and x[2] in compactions}
        exp = [x for x in expected if x not in lost_ok]
        dlv = [x for x in delivered if x not in lost_ok]
        assert len(set(delivered)) == len(delivered)
        compacted = [r for r in body if r.compact_revision]
        if compacted:
            assert len(compacted) == 1 and body[-1] is compacted[0]
            assert start < compacted[0].compact_revision
            assert dlv == exp[: len(dlv)]
        else:
            assert dlv == exp
        # a txn's events for the watcher always come in one response
        for r in body:
            assert len({ev.kv.mod_revision for ev in r.events}) <= ws.batch_revs
        revs_per_resp = [sorted({ev.kv.mod_revision for ev in r.events}) for r in body if r.events]
        flat = [rv for rs in revs_per_resp for rv in rs]
        assert flat == sorted(set(flat))  # no revision split over two responses


def _in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


def test_restore_catches_synced_watchers_up(tmp_path: Path, store: KVStore) -> None:
    """After the store is replaced (a snapshot from the leader), synced watchers catch up from
    the new store from where they were."""
    ws = WatchableStore(store)
    s = ws.new_stream()
    w = s.watch(b"k")
    s.drain()
    r = put(store, (b"k", b"1"))
    assert [evs(x) for x in events_of(s)] == [[("PUT", b"k", r)]]
    # a second store that went further (as if restored from a later snapshot)
    be2 = Backend(tmp_path / "db2", map_size=64 << 20)
    try:
        other = KVStore(be2)
        for i in range(3):
            put(other, (b"k", b"%d" % i))
        ws.restore(other)
        assert w.state is State.UNSYNCED
        settle(ws)
        assert [evs(x) for x in events_of(s)] == [[("PUT", b"k", r + 1), ("PUT", b"k", r + 2)]]
        r4 = put(other, (b"k", b"x"))
        assert [evs(x) for x in events_of(s)] == [[("PUT", b"k", r4)]]
    finally:
        be2.close()


def test_a_watcher_far_behind_does_not_hold_up_others(store: KVStore) -> None:
    ws = WatchableStore(store, batch_revs=10)
    first = put(store, (b"k", b"0"))
    for i in range(200):
        put(store, (b"k", b"%d" % i))
    s = ws.new_stream(capacity=1000)
    far = s.watch(b"k", start_rev=first)
    near = s.watch(b"k", start_rev=store.rev - 2)
    ws.sync_step()
    ws.sync_step()
    assert near.state is State.SYNCED
    assert far.state is State.UNSYNCED
    settle(ws)
    assert far.state is State.SYNCED
