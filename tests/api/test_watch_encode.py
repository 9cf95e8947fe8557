"""The Watch servicer's own encoder: byte for byte what protobuf produces, and etcd's fragments."""

from __future__ import annotations

import random

import pytest

from petcd.api.watch import Encoder
from petcd.mvcc.watchable import WatchResponse
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.mvccpb import kv_pb2 as mvccpb

CLUSTER, MEMBER = 0xDEADBEEFCAFE1234, 0x8E9E05C52164694D


def header(rev: int) -> pb.ResponseHeader:
    return pb.ResponseHeader(cluster_id=CLUSTER, member_id=MEMBER, revision=rev, raft_term=7)


def reference(r: WatchResponse, events: list[mvccpb.Event]) -> pb.WatchResponse:
    m = pb.WatchResponse(
        header=header(r.revision),
        watch_id=r.watch_id,
        created=r.created,
        canceled=r.canceled or r.compact_revision != 0,
        compact_revision=r.compact_revision,
        cancel_reason=r.cancel_reason,
    )
    m.events.extend(events)
    return m


def etcd_fragments(wr: pb.WatchResponse, limit: int) -> list[pb.WatchResponse]:
    """etcd's sendFragments, restated over protobuf messages."""
    if wr.ByteSize() < limit or len(wr.events) < 2:
        return [wr]
    out: list[pb.WatchResponse] = []
    idx = 0
    while True:
        cur = pb.WatchResponse()
        cur.CopyFrom(wr)
        del cur.events[:]
        cur.fragment = True
        for ev in wr.events[idx:]:
            cur.events.append(ev)
            if len(cur.events) > 1 and cur.ByteSize() >= limit:
                del cur.events[-1]
                break
            idx += 1
        if idx == len(wr.events):
            cur.fragment = False
        out.append(cur)
        if not cur.fragment:
            return out


def random_event(rnd: random.Random) -> mvccpb.Event:
    rev = rnd.choice([1, 2, 127, 128, 300, 1 << 40])
    kv = mvccpb.KeyValue(
        key=rnd.randbytes(rnd.randint(1, 20)),
        value=rnd.randbytes(rnd.choice([0, 1, 100, 200, 5000])),
        create_revision=rev,
        mod_revision=rev + rnd.randint(0, 3),
        version=rnd.randint(0, 3),
        lease=rnd.choice([0, 0x7FFF_FFFF_FFFF_FFFF]),
    )
    ev = mvccpb.Event(type=rnd.choice([0, 1]), kv=kv)
    if rnd.random() < 0.3:
        ev.prev_kv.CopyFrom(kv)
    return ev


@pytest.mark.parametrize("seed", range(20))
def test_bytes_equal_protobuf(seed: int) -> None:
    rnd = random.Random(seed)
    enc = Encoder(header)
    shared = [random_event(rnd) for _ in range(5)]
    for _ in range(50):
        r = WatchResponse(
            watch_id=rnd.choice([0, 1, -1, 5, 300, 1 << 50]),
            revision=rnd.choice([0, 1, 200, 1 << 33]),
            events=[],
            compact_revision=rnd.choice([0, 0, 17]),
            created=rnd.random() < 0.2,
            canceled=rnd.random() < 0.2,
            cancel_reason=rnd.choice(["", "mvcc: watcher range is empty", "é"]),
        )
        events = rnd.sample(shared, rnd.randint(0, 5)) + [random_event(rnd) for _ in range(rnd.randint(0, 2))]
        (got,) = enc.encode(r, 7, events)
        assert got == reference(r, events).SerializeToString()


@pytest.mark.parametrize("seed", range(10))
def test_fragments_as_etcd(seed: int) -> None:
    rnd = random.Random(seed)
    enc = Encoder(header)
    events = [random_event(rnd) for _ in range(rnd.randint(1, 60))]
    r = WatchResponse(watch_id=rnd.choice([0, 3]), revision=99, events=events)
    ref = reference(r, events)
    for limit in (10, 500, 3000, 20000, ref.ByteSize(), ref.ByteSize() + 1):
        got = enc.encode(r, 7, events, limit)
        want = [m.SerializeToString() for m in etcd_fragments(ref, limit)]
        assert got == want, limit
