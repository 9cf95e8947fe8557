"""Many events from concurrent writers to one prefix watcher, part of them replayed from history,
plus a watcher whose client does not read at all while the writers run.

Every revision the writers created must reach each watcher exactly once, in revision order, with
all the events of a txn in one response. N events (default 20,000; PETCD_WATCH_EVENTS=100000 for
the full-size run) on real etcd and on the server under test.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.api.watch_client import WatchClient
from tests.harness import Server

N_EVENTS = int(os.environ.get("PETCD_WATCH_EVENTS", "20000"))
WRITERS = 4
TXN_PUTS = 4
PREFIX = b"load/"
READ_TIMEOUT = 60.0


def _writer(
    endpoint: str,
    wid: int,
    events: int,
    out: Counter[int],
    lock: threading.Lock,
    errors: list[BaseException],
    pad: bytes,
    prefix: bytes,
) -> None:
    """Write `events` events under the prefix: single puts and txns of TXN_PUTS puts, alternately.
    out counts the events of each revision this writer created."""
    try:
        with grpc.insecure_channel(endpoint) as ch:
            kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
            mine: Counter[int] = Counter()
            i = 0
            done = 0
            while done < events:
                if i % 2 and events - done >= TXN_PUTS:
                    ops = [
                        pb.RequestOp(
                            request_put=pb.PutRequest(
                                key=prefix + b"%d/t%d" % (wid, (i + j) % 64), value=b"%d" % i + pad
                            )
                        )
                        for j in range(TXN_PUTS)
                    ]
                    rev = kv.Txn(pb.TxnRequest(success=ops), timeout=30).header.revision
                    mine[rev] += TXN_PUTS
                    done += TXN_PUTS
                else:
                    rev = kv.Put(
                        pb.PutRequest(key=prefix + b"%d/p%d" % (wid, i % 64), value=b"%d" % i + pad),
                        timeout=30,
                    ).header.revision
                    mine[rev] += 1
                    done += 1
                i += 1
            with lock:
                out.update(mine)
    except BaseException as exc:
        errors.append(exc)


def _write(
    endpoint: str, total: int, out: Counter[int], pad: bytes = b"", prefix: bytes = PREFIX
) -> list[threading.Thread]:
    lock = threading.Lock()
    errors: list[BaseException] = []
    share = [total // WRITERS + (1 if w < total % WRITERS else 0) for w in range(WRITERS)]
    threads = [
        threading.Thread(
            target=_writer, args=(endpoint, w, share[w], out, lock, errors, pad, prefix), daemon=True
        )
        for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    threads[0].errors = errors  # type: ignore[attr-defined]
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(300)
        assert not t.is_alive(), "writer stuck"
    errors: list[BaseException] = threads[0].errors  # type: ignore[attr-defined]
    if errors:
        raise errors[0]


def _collect(c: WatchClient, expected_events: int) -> list[pb.WatchResponse]:
    got: list[pb.WatchResponse] = []
    n = 0
    while n < expected_events:
        r = c.next(timeout=READ_TIMEOUT)
        assert not r.canceled, f"watch canceled: {r.cancel_reason or r.compact_revision}"
        if r.events:
            got.append(r)
            n += len(r.events)
    return got


def _check(got: list[pb.WatchResponse], written: Counter[int]) -> None:
    seen: Counter[int] = Counter()
    last = 0
    for r in got:
        revs = [e.kv.mod_revision for e in r.events]
        assert revs == sorted(revs), "events out of order inside a response"
        assert revs[0] > last, f"revision {revs[0]} after {last}: out of order or duplicated"
        last = revs[-1]
        for rev, k in Counter(revs).items():
            assert k == written[rev], f"revision {rev}: {k} of its {written[rev]} events in one response"
        seen.update(revs)
    assert seen == written


def test_prefix_watcher_gets_every_event_once_in_order(server: Server) -> None:
    ep = server.endpoint
    base = WatchClient(ep, read=False)
    start = base.put(b"load-marker") + 1
    base.close()
    written: Counter[int] = Counter()
    history = N_EVENTS // 4
    _join(_write(ep, history, written))

    # live watcher from the past: replays `history` events from the store while writers go on
    live = WatchClient(ep)
    # stalled watcher: its client reads nothing until the writers are done
    stalled = WatchClient(ep, read=False)
    try:
        live.created(PREFIX, b"load0", start_revision=start)
        stalled.create(PREFIX, b"load0", start_revision=start)
        threads = _write(ep, N_EVENTS - history, written)
        got = _collect(live, N_EVENTS)
        _join(threads)
        assert sum(written.values()) == N_EVENTS
        _check(got, written)
        # the stalled client now reads: it too gets everything, once, in order
        stalled.start_reading()
        first = stalled.next(timeout=READ_TIMEOUT)
        assert first.created
        _check(_collect(stalled, N_EVENTS), written)
        assert live.quiet(0.2) == [] and stalled.quiet(0.2) == []
    finally:
        live.close()
        stalled.close()


def test_stalled_client_does_not_hold_up_writers_or_others(server: Server) -> None:
    """A client that stops reading gets far more data than gRPC buffers: its watcher is set aside,
    writers and another watcher go on, and it gets everything once it reads again."""
    ep = server.endpoint
    stalled = WatchClient(ep, read=False)
    live = WatchClient(ep)
    try:
        live.created(b"stall/", b"stall0")
        stalled.create(b"stall/", b"stall0")
        written: Counter[int] = Counter()
        n = 3000
        threads = _write(ep, n, written, pad=b"x" * 4096, prefix=b"stall/")  # 12 MB of events
        _join(threads)
        _check(_collect(live, n), written)
        stalled.start_reading()
        assert stalled.next(timeout=READ_TIMEOUT).created
        _check(_collect(stalled, n), written)
    finally:
        live.close()
        stalled.close()
