"""Raft snapshots every --snapshot-count applied entries, and restart from them."""

from __future__ import annotations

from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import ServerGroup


def test_snapshot_count_triggers_snapshots_and_restart_uses_them(servers: ServerGroup) -> None:
    server = servers.start("petcd", extra_args=("--snapshot-count=100", "--max-snapshots=2"))
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        for i in range(450):
            kv.Put(pb.PutRequest(key=f"snap/{i:04d}".encode(), value=f"v{i}".encode()), timeout=5)
    snap_dir = Path(server.data_dir) / "member" / "snap"
    snaps = sorted(snap_dir.glob("*.snap"))
    assert snaps, "no raft snapshot was written"
    assert len(snaps) <= 2, f"--max-snapshots=2 kept {len(snaps)} files"
    newest_index = int(snaps[-1].stem.split("-")[1], 16)
    assert newest_index >= 400

    server.kill9()
    server.restart()
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        resp = kv.Range(pb.RangeRequest(key=b"snap/", range_end=b"snap0"), timeout=5)
        assert resp.count == 450
        assert {x.value for x in resp.kvs} == {f"v{i}".encode() for i in range(450)}
        put = kv.Put(pb.PutRequest(key=b"snap/after", value=b"x"), timeout=5)
        assert put.header.revision == resp.header.revision + 1
