"""The Watch stream over gRPC, on real etcd and on the server under test in turn: both must give
exactly these responses (ids, flags, reasons, header revisions, events, fragments)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from tests.api.watch_client import WatchClient, events
from tests.harness import Server

NOPUT = pb.WatchCreateRequest.NOPUT
NODELETE = pb.WatchCreateRequest.NODELETE
PROGRESS_INTERVAL = 1.0


@pytest.fixture(scope="module")
def server_args() -> tuple[str, ...]:
    # a small request limit makes fragmenting testable (etcd splits at limit + 512 KiB)
    return ("--max-request-bytes=2000", f"--experimental-watch-progress-notify-interval={PROGRESS_INTERVAL:g}s")


@pytest.fixture
def wc(server: Server) -> Iterator[WatchClient]:
    c = WatchClient(server.endpoint)
    yield c
    c.close()


def shape(r: pb.WatchResponse, base: int) -> tuple[object, ...]:
    """What a response says, with the header revision relative to base (0 stays 0)."""
    rev = r.header.revision - base if r.header.revision else None
    return (r.watch_id, r.created, r.canceled, r.cancel_reason, r.compact_revision, rev, events(r))


def test_ids_refusals_cancel(wc: WatchClient) -> None:
    base = wc.put(b"ids/a")
    wc.create(b"ids/a")
    wc.create(b"ids/b", watch_id=5)
    wc.create(b"ids/b", watch_id=5)
    wc.create(b"ids/c")
    wc.create(b"ids/z", b"ids/a")
    wc.cancel(5)
    wc.cancel(99)  # unknown: no answer
    wc.progress()
    got = [shape(wc.next(), base) for _ in range(7)]
    assert got == [
        (0, True, False, "", 0, 0, []),
        (5, True, False, "", 0, 0, []),
        (-1, True, True, "mvcc: duplicate watch ID provided on the WatchStream", 0, 0, []),
        (1, True, False, "", 0, 0, []),
        (-1, True, True, "mvcc: watcher range is empty", 0, 0, []),
        (5, False, True, "", 0, 0, []),
        (-1, False, False, "", 0, 0, []),
    ]
    assert wc.quiet() == []
    r = wc.put(b"ids/a", b"2")
    assert shape(wc.next(), base) == (0, False, False, "", 0, r - base, [("PUT", b"ids/a", r)])
    wc.put(b"ids/b")  # its watcher was canceled
    assert wc.quiet() == []


def test_history_live_and_txn(wc: WatchClient) -> None:
    first = wc.put(b"h/1")
    wc.put(b"other")
    second = wc.delete(b"h/1")
    cur = wc.put(b"other")
    wc.created(b"h/", b"h0", start_revision=first)
    r = wc.next()
    # replayed history carries the revision of the store when it was read
    assert (r.header.revision, events(r)) == (cur, [("PUT", b"h/1", first), ("DELETE", b"h/1", second)])
    d = r.events[1].kv
    assert (d.create_revision, d.version, d.value) == (0, 0, b"")
    txn = pb.TxnRequest(
        success=[
            pb.RequestOp(request_put=pb.PutRequest(key=b"h/2", value=b"x")),
            pb.RequestOp(request_put=pb.PutRequest(key=b"i", value=b"x")),
            pb.RequestOp(request_put=pb.PutRequest(key=b"h/3", value=b"x")),
        ]
    )
    t = wc.kv.Txn(txn, timeout=10).header.revision
    r = wc.next()
    assert (r.header.revision, events(r)) == (t, [("PUT", b"h/2", t), ("PUT", b"h/3", t)])


def test_start_revision_zero_and_future(wc: WatchClient) -> None:
    cur = wc.put(b"f/x")
    c = wc.created(b"f/x")
    assert c.header.revision == cur
    wc.created(b"f/x", start_revision=cur + 3)
    r1 = wc.put(b"f/x")
    wc.put(b"f/x")
    r3 = wc.put(b"f/x")
    got = [(r.watch_id, events(r)) for r in (wc.next(), wc.next(), wc.next(), wc.next())]
    assert sorted(got) == sorted(
        [(0, [("PUT", b"f/x", r1)]), (0, [("PUT", b"f/x", r1 + 1)]), (0, [("PUT", b"f/x", r3)]), (1, [("PUT", b"f/x", r3)])]
    )


def test_compaction(wc: WatchClient) -> None:
    r1 = wc.put(b"c/k")
    r2 = wc.put(b"c/k2")
    r3 = wc.delete(b"c/k")
    r4 = wc.put(b"c/k2", b"2")
    wc.kv.Compact(pb.CompactionRequest(revision=r3, physical=True), timeout=10)
    for start in (r1, r2):
        wc.created(b"c/", b"c0", start_revision=start, watch_id=7)
        r = wc.next()
        assert (r.watch_id, r.canceled, r.compact_revision, r.header.revision, list(r.events)) == (7, True, r3, 0, [])
        wc.cancel(7)  # a compacted watcher keeps its id until canceled
        r = wc.next()
        assert (r.watch_id, r.canceled, r.compact_revision) == (7, True, 0)
    # at the compaction revision itself: not canceled (etcd); the compacted delete is gone
    wc.created(b"c/", b"c0", start_revision=r3, prev_kv=True)
    r = wc.next()
    assert (r.canceled, events(r)) == (False, [("PUT", b"c/k2", r4)])
    assert (r.events[0].prev_kv.value, r.events[0].prev_kv.mod_revision) == (b"v", r2)


def test_prev_kv_and_filters(wc: WatchClient) -> None:
    wc.created(b"p/k", prev_kv=True)
    wc.created(b"p/k", filters=[NOPUT])
    wc.created(b"p/k", filters=[NODELETE])
    r1 = wc.put(b"p/k", b"1")
    r2 = wc.put(b"p/k", b"2")
    r3 = wc.delete(b"p/k")
    got: dict[int, list[pb.WatchResponse]] = {}
    for _ in range(6):
        r = wc.next()
        got.setdefault(r.watch_id, []).append(r)
    assert [events(r) for r in got[1]] == [[("DELETE", b"p/k", r3)]]
    assert [events(r) for r in got[2]] == [[("PUT", b"p/k", r1)], [("PUT", b"p/k", r2)]]
    prevs = [(r.events[0].HasField("prev_kv"), r.events[0].prev_kv.value) for r in got[0]]
    assert prevs == [(False, b""), (True, b"1"), (True, b"2")]


def test_key_forms(wc: WatchClient) -> None:
    base = wc.put(b"kf")
    wc.create(b"", b"\x00", start_revision=base)  # every key
    wc.create(b"kf", b"\x00", start_revision=base)  # keys >= kf
    wc.create(b"", start_revision=base)  # the key "\0" alone
    rs = [wc.next() for _ in range(5)]
    assert sorted(r.watch_id for r in rs if r.created) == [0, 1, 2]
    got = {r.watch_id: events(r) for r in rs if not r.created}
    assert got == {0: [("PUT", b"kf", base)], 1: [("PUT", b"kf", base)]}
    assert wc.quiet() == []


def test_progress_request(wc: WatchClient) -> None:
    cur = wc.put(b"pr/a")
    wc.progress()
    r = wc.next()
    assert (r.watch_id, r.header.revision, list(r.events), r.created) == (-1, cur, [], False)


def test_progress_notify(wc: WatchClient) -> None:
    cur = wc.put(b"pn/a")
    wc.created(b"pn/b", progress_notify=True)
    r = wc.next(timeout=PROGRESS_INTERVAL * 5)
    assert (r.watch_id, r.header.revision, list(r.events), r.created, r.canceled) == (0, cur, [], False, False)
    # a watcher that got events since the last tick gets no notification at that tick
    rev = wc.put(b"pn/b")
    r = wc.next()
    assert events(r) == [("PUT", b"pn/b", rev)]
    r = wc.next(timeout=PROGRESS_INTERVAL * 5)
    assert (r.watch_id, r.header.revision, list(r.events)) == (0, rev, [])


def test_fragment(server: Server) -> None:
    c = WatchClient(server.endpoint)
    try:
        base = c.put(b"fr")
        n, size = 360, 1500  # 360 * 1.5 KiB > 2000 + 512 KiB
        for i in range(n):
            c.put(b"fr/%03d" % i, b"v" * size)
        c.create(b"fr/", b"fr0", start_revision=base + 1, fragment=True)
        c.create(b"fr/", b"fr0", start_revision=base + 1, watch_id=9)
        parts: list[pb.WatchResponse] = []
        wholes: list[pb.WatchResponse] = []
        created = 0
        while created < 2 or not wholes or not parts or parts[-1].fragment:
            r = c.next()
            if r.created:
                created += 1
            elif r.watch_id == 0:
                parts.append(r)
            else:
                wholes.append(r)
        (whole,) = wholes
        assert whole.watch_id == 9 and not whole.fragment and len(whole.events) == n
        assert len(parts) == 2
        assert [p.fragment for p in parts] == [True, False]
        assert [e.kv.mod_revision for p in parts for e in p.events] == list(range(base + 1, base + 1 + n))
        assert all(p.ByteSize() < 2000 + 512 * 1024 for p in parts)
        assert len({p.header.revision for p in parts}) == 1
    finally:
        c.close()


def test_require_leader_metadata(server: Server) -> None:
    c = WatchClient(server.endpoint, metadata=[("hasleader", "true")])
    try:
        r = c.created(b"rl")
        rev = c.put(b"rl")
        assert events(c.next()) == [("PUT", b"rl", rev)]
        assert r.watch_id == 0
    finally:
        c.close()


def test_half_closed_stream_keeps_watching(server: Server) -> None:
    """A client that closes its sending side still gets its events (etcd ends the stream only
    when the client goes away)."""
    c = WatchClient(server.endpoint)
    try:
        c.created(b"cl")
        c.end_requests()
        rev = c.put(b"cl")
        assert events(c.next()) == [("PUT", b"cl", rev)]
    finally:
        c.close()
