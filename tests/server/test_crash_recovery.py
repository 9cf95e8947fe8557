"""kill -9 under a concurrent write load: every acknowledged write survives the restart.

Writers put distinct keys through gRPC and record the revision of each acknowledged put;
the member is killed with SIGKILL while they run. After a restart on the same data dir
every acknowledged key must be there with the value and mod revision it was acknowledged
with, and new writes must continue the revision sequence without a gap.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.wal import WAL
from tests.harness import Server, ServerGroup


def _kv(server: Server) -> tuple[grpc.Channel, pb_grpc.KVStub]:
    ch = grpc.insecure_channel(server.endpoint)
    return ch, pb_grpc.KVStub(ch)


def _write_load(server: Server, writer: int, acked: dict[bytes, tuple[bytes, int]], stop: threading.Event) -> None:
    ch, kv = _kv(server)
    i = 0
    try:
        while not stop.is_set():
            key = f"crash/{writer}/{i:06d}".encode()
            value = f"v{writer}-{i}".encode()
            try:
                resp = kv.Put(pb.PutRequest(key=key, value=value), timeout=2)
            except grpc.RpcError:
                return  # the member died: this write was never acknowledged
            acked[key] = (value, resp.header.revision)
            i += 1
    finally:
        ch.close()


def test_acknowledged_writes_survive_kill9(servers: ServerGroup) -> None:
    server = servers.start("petcd")
    acked: dict[bytes, tuple[bytes, int]] = {}
    stop = threading.Event()
    threads = [threading.Thread(target=_write_load, args=(server, w, acked, stop)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked) >= 300, f"only {len(acked)} writes were acknowledged before the kill"

    server.restart()
    ch, kv = _kv(server)
    with ch:
        resp = kv.Range(pb.RangeRequest(key=b"crash/", range_end=b"crash0"), timeout=5)
        found = {kv_.key: (kv_.value, kv_.mod_revision) for kv_ in resp.kvs}
        missing = [k for k in acked if k not in found]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        changed = [k for k, v in acked.items() if found[k] != v]
        assert not changed, f"acknowledged writes changed: {changed[:3]}"
        # revisions go on from where the log ends, without a gap
        before = resp.header.revision
        put = kv.Put(pb.PutRequest(key=b"after", value=b"x"), timeout=5)
        assert put.header.revision == before + 1
        revs = sorted(r for _, r in found.values())
        assert revs == list(range(revs[0], revs[0] + len(revs))), "revisions of one-key puts have a gap"


def test_torn_wal_tail_is_repaired(servers: ServerGroup) -> None:
    server = servers.start("petcd")
    ch, kv = _kv(server)
    with ch:
        for i in range(20):
            kv.Put(pb.PutRequest(key=f"torn/{i}".encode(), value=b"v"), timeout=5)
    server.kill9()
    wal_dir = Path(server.data_dir) / "member" / "wal"
    assert WAL.exists(str(wal_dir))
    last = sorted(wal_dir.glob("*.wal"))[-1]
    size = last.stat().st_size
    with last.open("r+b") as f:
        # a half-written record at the end, as a crash in the middle of a write leaves it
        f.seek(0, 2)
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x80" + b"\x07" * 13)
    assert last.stat().st_size > size
    server.restart()
    ch, kv = _kv(server)
    with ch:
        resp = kv.Range(pb.RangeRequest(key=b"torn/", range_end=b"torn0"), timeout=5)
        assert resp.count == 20
        kv.Put(pb.PutRequest(key=b"torn/after", value=b"v"), timeout=5)
