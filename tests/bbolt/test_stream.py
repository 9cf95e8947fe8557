"""stream_etcd_snapshot: petcd's backend as an etcd snapshot that real etcdutl 3.5.1 reads and
restores, and that a real etcd 3.5.1 restored from it serves with the same keys and revision."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from petcd.backend import Backend
from petcd.bbolt import EtcdSnapshot, db_status, stream_etcd_snapshot
from petcd.bbolt.export import export_in_child
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.bbolt.etcd351 import (
    ETCDCTL,
    Etcd351,
    etcdctl,
    etcdutl,
    fill,
    hashkv,
    keyspace,
    leases,
    petcdutl,
    restore_args,
    run,
)
from tests.harness import Server, ServerGroup


@pytest.mark.parametrize("in_child", [True, False], ids=["child", "in-process"])
def test_petcd_snapshot_restores_into_real_etcd(servers: ServerGroup, tmp_path: Path, in_child: bool) -> None:
    petcd = servers.start("petcd")
    fill(petcd)
    etcdctl(petcd, "alarm", "list")
    rev, kvs = keyspace(petcd)
    lease_ids = leases(petcd)
    petcd.stop()

    be = Backend(str(petcd.data_dir / "member" / "snap" / "db"))
    try:
        with EtcdSnapshot(be, tmp_dir=str(tmp_path), in_child=in_child) as snap:
            chunks = list(snap.chunks(chunk_size=4096))
            assert all(len(c) <= 4096 for c in chunks)
            db = b"".join(chunks[:-1])
            assert len(db) == snap.db_size and snap.size == snap.db_size + 32
            assert chunks[-1] == hashlib.sha256(db).digest()
        snapshot = tmp_path / "petcd.snapshot"
        snapshot.write_bytes(b"".join(stream_etcd_snapshot(be, tmp_dir=str(tmp_path), in_child=in_child)))
    finally:
        be.close()
    assert snapshot.read_bytes()[:-32] == db  # the same consistent state both times
    assert list(tmp_path.glob("etcd-snapshot-*")) == []  # temporary files gone

    status = etcdutl("snapshot", "status", str(snapshot), "-w", "json").stdout
    ds = db_status(snapshot)
    assert f'"revision":{rev}' in status and f'"hash":{ds.hash}' in status

    etcd = Etcd351(tmp_path / "etcd", name="e1")
    servers.servers.append(etcd)
    etcdutl("snapshot", "restore", str(snapshot), *restore_args(etcd))
    etcd.start()
    assert keyspace(etcd) == (rev, kvs)
    assert leases(etcd) == lease_ids
    # the restored etcd takes writes on top of the restored revision
    etcdctl(etcd, "put", "after", "restore")
    assert keyspace(etcd)[0] == rev + 1


def test_snapshot_of_an_empty_petcd(servers: ServerGroup, tmp_path: Path) -> None:
    petcd: Server = servers.start("petcd")
    rev, kvs = keyspace(petcd)
    petcd.stop()
    be = Backend(str(petcd.data_dir / "member" / "snap" / "db"))
    try:
        snapshot = tmp_path / "empty.snapshot"
        snapshot.write_bytes(b"".join(stream_etcd_snapshot(be)))
    finally:
        be.close()
    etcd = Etcd351(tmp_path / "etcd", name="e1")
    servers.servers.append(etcd)
    etcdutl("snapshot", "restore", str(snapshot), *restore_args(etcd))
    etcd.start()
    assert keyspace(etcd) == (rev, kvs) == (1, [])


def test_export_while_petcd_runs_and_writes(servers: ServerGroup, tmp_path: Path) -> None:
    """The child reads the member's LMDB file while the member keeps writing: it sees one
    committed state, which etcdutl accepts."""
    petcd = servers.start("petcd")
    fill(petcd, 20)
    db = str(petcd.data_dir / "member" / "snap" / "db")
    out = tmp_path / "live.db"
    for i in range(3):
        etcdctl(petcd, "put", f"during/{i}", "x" * 3000)
        size = export_in_child(db, str(out))
        assert out.stat().st_size == size
        ds = db_status(out)
        theirs = etcdutl("snapshot", "status", str(out), "-w", "json").stdout
        assert f'"hash":{ds.hash}' in theirs
    rev, _ = keyspace(petcd)
    # batches commit within the backend's batch interval (0.1 s): the newest revision shows up
    deadline = time.monotonic() + 10
    while db_status(out).revision != rev and time.monotonic() < deadline:
        time.sleep(0.1)
        export_in_child(db, str(out))
    assert db_status(out).revision == rev


# -- the Snapshot RPC, end to end with the real tools --------------------------------------------


def _saved_from_petcd(servers: ServerGroup, tmp_path: Path) -> tuple[Path, Server, int, list[dict[str, Any]]]:
    """A running petcd with data, and `etcdctl snapshot save` of it."""
    petcd = servers.start("petcd")
    fill(petcd)
    rev, kvs = keyspace(petcd)
    path = tmp_path / "petcd.snapshot"
    out = etcdctl(petcd, "snapshot", "save", str(path))
    assert f"Snapshot saved at {path}" in out.stdout
    return path, petcd, rev, kvs


def test_etcdctl_save_from_petcd_then_etcdutl_restore_into_real_etcd(
    servers: ServerGroup, tmp_path: Path
) -> None:
    path, petcd, rev, kvs = _saved_from_petcd(servers, tmp_path)
    lease_ids = leases(petcd)
    theirs_hash = hashkv(petcd, rev)
    data = path.read_bytes()
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]  # etcd's trailer
    assert list((petcd.data_dir / "member" / "snap").glob("etcd-snapshot-*")) == []

    # etcdutl, etcdctl's deprecated `snapshot status` (what python-etcd3's tests run) and
    # petcdutl read the same figures off the file
    for fmt in ("simple", "json", "table"):
        want = etcdutl("snapshot", "status", str(path), "-w", fmt).stdout
        assert etcdctl(petcd, "snapshot", "status", str(path), "-w", fmt).stdout == want
        assert petcdutl("snapshot", "status", str(path), "-w", fmt).stdout == want
    status = json.loads(etcdutl("snapshot", "status", str(path), "-w", "json").stdout)
    assert status["revision"] == rev

    etcd = Etcd351(tmp_path / "etcd", name="e1")
    servers.servers.append(etcd)
    etcdutl("snapshot", "restore", str(path), *restore_args(etcd))
    etcd.start()
    assert keyspace(etcd) == (rev, kvs)
    assert leases(etcd) == lease_ids
    assert hashkv(etcd, rev) == theirs_hash


def test_etcdctl_save_from_petcd_then_petcdutl_restore(servers: ServerGroup, tmp_path: Path) -> None:
    path, petcd, rev, kvs = _saved_from_petcd(servers, tmp_path)
    lease_ids = leases(petcd)
    want_hash = hashkv(petcd, rev)
    # the notebook points etcdctl at the peer ports: the member itself streams the same file
    via_peer = tmp_path / "peer.snapshot"
    run([str(ETCDCTL), f"--endpoints={petcd.peer_endpoint}", "snapshot", "save", str(via_peer)])
    assert via_peer.read_bytes() == path.read_bytes()
    restored = Server("petcd", tmp_path / "restored", name="p1")
    servers.servers.append(restored)
    petcdutl("snapshot", "restore", str(path), *restore_args(restored))
    restored.start()
    assert keyspace(restored) == (rev, kvs)
    assert leases(restored) == lease_ids
    assert hashkv(restored, rev) == want_hash


def test_etcd_snapshot_restored_by_petcdutl_serves_the_same_hashkv(servers: ServerGroup, tmp_path: Path) -> None:
    """etcd -> petcd: a real etcd 3.5.1's `etcdctl snapshot save`, `petcdutl snapshot restore`,
    and petcd answers HashKV as etcd did; petcd's own snapshot of it round-trips back to etcd."""
    etcd = Etcd351(tmp_path / "src", name="src")
    servers.servers.append(etcd)
    etcd.start()
    fill(etcd)
    rev, kvs = keyspace(etcd)
    want_hash = hashkv(etcd, rev)
    path = tmp_path / "etcd.snapshot"
    etcdctl(etcd, "snapshot", "save", str(path))
    petcd = Server("petcd", tmp_path / "p", name="p1")
    servers.servers.append(petcd)
    petcdutl("snapshot", "restore", str(path), *restore_args(petcd))
    petcd.start()
    assert keyspace(petcd) == (rev, kvs)
    assert hashkv(petcd, rev) == want_hash
    # and back: petcd's Snapshot RPC gives etcd the same data again
    back = tmp_path / "back.snapshot"
    etcdctl(petcd, "snapshot", "save", str(back))
    etcd2 = Etcd351(tmp_path / "back", name="e2")
    servers.servers.append(etcd2)
    etcdutl("snapshot", "restore", str(back), *restore_args(etcd2))
    etcd2.start()
    assert keyspace(etcd2) == (rev, kvs)
    assert hashkv(etcd2, rev) == want_hash


def test_snapshot_rpc_chunks_as_etcd_sends_them(servers: ServerGroup) -> None:
    """32 KiB blobs whose remaining_bytes count down to 0, then the sha256, no header; the same
    shape real etcd 3.5.1 streams."""
    petcd = servers.start("petcd")
    fill(petcd, 10)
    etcd = servers.start("etcd")
    fill(etcd, 10)
    for server in (etcd, petcd):
        with grpc.insecure_channel(server.endpoint) as ch:
            rs = list(pb_grpc.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest(), timeout=30))
        total = sum(len(r.blob) for r in rs[:-1])
        assert all(len(r.blob) == 32 * 1024 for r in rs[:-2]), server
        assert [r.remaining_bytes for r in rs[:-1]] == [
            total - sum(len(x.blob) for x in rs[: i + 1]) for i in range(len(rs) - 1)
        ]
        assert rs[-1].remaining_bytes == 0 and rs[-1].blob == hashlib.sha256(b"".join(r.blob for r in rs[:-1])).digest()
        assert not any(r.HasField("header") for r in rs), server


def test_snapshot_rpc_does_not_stall_the_member(servers: ServerGroup) -> None:
    """While a snapshot of 40,000 keys is converted and streamed, the member keeps answering.
    (Converted on the member's own thread, requests here waited ~0.3 s or more.)"""
    petcd = servers.start("petcd")
    with grpc.insecure_channel(petcd.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        value = b"v" * 200
        for t in range(40000 // 128 + 1):
            puts = [pb.RequestOp(request_put=pb.PutRequest(key=f"k/{t:04d}/{i:03d}".encode(), value=value))
                    for i in range(128)]
            kv.Txn(pb.TxnRequest(success=puts), timeout=10)
        latencies: list[float] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                t0 = time.monotonic()
                kv.Range(pb.RangeRequest(key=b"k/0000/000"), timeout=10)
                latencies.append(time.monotonic() - t0)
                time.sleep(0.005)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            t0 = time.monotonic()
            rs = list(pb_grpc.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest(), timeout=120))
            took = time.monotonic() - t0
        finally:
            done.set()
            prober.join()
    snapshot_db = b"".join(r.blob for r in rs[:-1])
    assert hashlib.sha256(snapshot_db).digest() == rs[-1].blob
    assert len(latencies) > 10
    assert max(latencies) < 0.15, (max(latencies), took)


def _open_snapshot_files(pid: int) -> list[str]:
    fd_dir = Path(f"/proc/{pid}/fd")
    out = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "etcd-snapshot-" in target:
            out.append(target)
    return out


def test_cancelled_snapshot_leaves_nothing_behind(servers: ServerGroup) -> None:
    """A client that goes away during the conversion or after the first chunk: the temporary
    file is closed (not left open in the member) and the member keeps serving snapshots."""
    petcd = servers.start("petcd")
    fill(petcd, 10)
    assert petcd.pid is not None
    with grpc.insecure_channel(petcd.endpoint) as ch:
        stub = pb_grpc.MaintenanceStub(ch)
        early = stub.Snapshot(pb.SnapshotRequest(), timeout=30)
        time.sleep(0.05)  # still converting in the child
        early.cancel()
        late = stub.Snapshot(pb.SnapshotRequest(), timeout=30)
        next(late)
        late.cancel()
        deadline = time.monotonic() + 10
        while _open_snapshot_files(petcd.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _open_snapshot_files(petcd.pid) == []
        rs = list(stub.Snapshot(pb.SnapshotRequest(), timeout=30))
    assert hashlib.sha256(b"".join(r.blob for r in rs[:-1])).digest() == rs[-1].blob
    assert list((petcd.data_dir / "member" / "snap").glob("etcd-snapshot-*")) == []


def test_member_killed_during_a_snapshot_leaves_no_file(servers: ServerGroup) -> None:
    """The conversion writes to a file that never has a name: kill -9 of the member while its
    child converts leaves nothing in the data dir, and the restarted member serves snapshots."""
    petcd = servers.start("petcd")
    with grpc.insecure_channel(petcd.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        for t in range(100):
            puts = [pb.RequestOp(request_put=pb.PutRequest(key=f"k/{t:04d}/{i:03d}".encode(), value=b"v" * 500))
                    for i in range(128)]
            kv.Txn(pb.TxnRequest(success=puts), timeout=10)
        before = sorted(p.name for p in petcd.data_dir.rglob("*"))
        stream = pb_grpc.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest(), timeout=30)
        time.sleep(0.15)  # the child is converting
        petcd.kill9()
        with pytest.raises(grpc.RpcError):
            list(stream)
    time.sleep(1)  # the orphaned child finishes or fails on its own
    after = sorted(p.name for p in petcd.data_dir.rglob("*"))
    assert not [n for n in after if "snapshot" in n and n not in before], after
    petcd.start()
    with grpc.insecure_channel(petcd.endpoint) as ch:
        rs = list(pb_grpc.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest(), timeout=30))
    assert hashlib.sha256(b"".join(r.blob for r in rs[:-1])).digest() == rs[-1].blob


def test_snapshots_and_defrags_take_turns(servers: ServerGroup) -> None:
    """A defrag asked for while a snapshot's export child has the LMDB file open waits for it:
    swapping the file under another process's environment left the member reading the
    compacted file through the wrong meta page (its buckets gone, the defrag failing)."""
    petcd = servers.start("petcd")
    with grpc.insecure_channel(petcd.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        maint = pb_grpc.MaintenanceStub(ch)
        for t in range(300):
            puts = [pb.RequestOp(request_put=pb.PutRequest(key=f"k/{t:04d}/{i:03d}".encode(), value=b"v" * 300))
                    for i in range(128)]
            kv.Txn(pb.TxnRequest(success=puts), timeout=10)

        def snapshot(out: list[int]) -> None:
            out.append(len(list(maint.Snapshot(pb.SnapshotRequest(), timeout=60))))

        for round_ in range(16):
            kv.Put(pb.PutRequest(key=b"round", value=str(round_).encode()), timeout=10)  # commit parity varies
            got: list[int] = []
            snap = threading.Thread(target=snapshot, args=(got,))
            snap.start()
            # the export child needs ~0.2 s to start; land the defrag's swap inside its run
            time.sleep(0.05 * (round_ % 8))
            maint.Defragment(pb.DefragmentRequest(), timeout=60)
            snap.join()
            assert got, "snapshot failed"
            count = kv.Range(pb.RangeRequest(key=b"k/", range_end=b"k0", count_only=True), timeout=10).count
            assert count == 300 * 128, round_
