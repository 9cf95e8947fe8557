"""stream_etcd_snapshot: petcd's backend as an etcd snapshot that real etcdutl 3.5.1 reads and
restores, and that a real etcd 3.5.1 restored from it serves with the same keys and revision."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from petcd.backend import Backend
from petcd.bbolt import EtcdSnapshot, db_status, stream_etcd_snapshot
from petcd.bbolt.export import export_in_child
from tests.bbolt.etcd351 import Etcd351, etcdctl, etcdutl, fill, keyspace, leases, restore_args
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
