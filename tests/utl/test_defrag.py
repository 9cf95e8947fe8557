"""petcdutl defrag --data-dir: etcdutl 3.5.1's offline defrag on petcd's LMDB backend."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.bbolt.etcd351 import Etcd351, etcdctl, etcdutl, hashkv, keyspace, petcdutl
from tests.harness import Server, ServerGroup


def _db(server: Server) -> Path:
    return server.data_dir / "member" / "snap" / "db"


def _fragment(server: Server) -> None:
    """Many writes, then deletes and a compaction: most of the file's pages end up free."""
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        for t in range(40):
            puts = [pb.RequestOp(request_put=pb.PutRequest(key=f"frag/{t:03d}/{i:03d}".encode(), value=b"x" * 2000))
                    for i in range(100)]
            kv.Txn(pb.TxnRequest(success=puts), timeout=10)
        kv.Put(pb.PutRequest(key=b"keep", value=b"me"), timeout=10)
        kv.DeleteRange(pb.DeleteRangeRequest(key=b"frag/", range_end=b"frag0"), timeout=10)
        rev = kv.Range(pb.RangeRequest(key=b"keep"), timeout=10).header.revision
        kv.Compact(pb.CompactionRequest(revision=rev, physical=True), timeout=30)


def _log_fields(stderr: str, msg: str) -> dict[str, object]:
    for line in stderr.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[-2] == msg:
            fields: dict[str, object] = json.loads(parts[-1])
            return fields
    raise AssertionError(f"no {msg!r} line in {stderr!r}")


def test_defrag_shrinks_the_file_and_keeps_the_data(servers: ServerGroup) -> None:
    petcd = servers.start("petcd")
    _fragment(petcd)
    rev, kvs = keyspace(petcd)
    want_hash = hashkv(petcd)
    petcd.stop()
    before = _db(petcd).stat().st_size

    out = petcdutl("defrag", "--data-dir", str(petcd.data_dir))
    assert out.stdout == ""  # etcdutl prints nothing on stdout either; the log goes to stderr
    start = _log_fields(out.stderr, "defragmenting")
    done = _log_fields(out.stderr, "finished defragmenting directory")
    after = _db(petcd).stat().st_size
    assert start["current-db-size-bytes"] == before
    assert done["current-db-size-bytes"] == after
    assert done["current-db-size-bytes-diff"] == after - before
    assert after < before / 4, (before, after)
    assert not [p for p in _db(petcd).parent.iterdir() if re.search(r"\.(defrag|predefrag)$", p.name)]

    petcd.start()
    assert keyspace(petcd) == (rev, kvs)
    assert hashkv(petcd) == want_hash
    etcdctl(petcd, "put", "after", "defrag")
    assert keyspace(petcd)[0] == rev + 1


def test_defrag_refused_while_a_member_runs(servers: ServerGroup) -> None:
    petcd = servers.start("petcd")
    etcdctl(petcd, "put", "k", "v")
    st = _db(petcd).stat()
    out = petcdutl("defrag", "--data-dir", str(petcd.data_dir), check=False)
    assert out.returncode == 1
    assert f"Error: Failed to defragment etcd data[{petcd.data_dir}] (a member is running on" in out.stderr
    assert "defragmenting" not in out.stderr
    assert _db(petcd).stat().st_ino == st.st_ino  # the file was not touched
    # the member noticed nothing: it still writes
    etcdctl(petcd, "put", "k", "v2")


def test_defrag_refused_while_the_file_is_open_with_the_wal_elsewhere(
    servers: ServerGroup, tmp_path: Path
) -> None:
    """With --wal-dir elsewhere the data dir has no WAL lock: LMDB's own lock tells."""
    petcd = Server("petcd", tmp_path / "p", name="p1", extra_args=(f"--wal-dir={tmp_path / 'wal'}",))
    servers.servers.append(petcd)
    petcd.start()
    etcdctl(petcd, "put", "k", "v")
    out = petcdutl("defrag", "--data-dir", str(petcd.data_dir), check=False)
    assert out.returncode == 1
    assert f"is open in process {petcd.pid}" in out.stderr, out.stderr
    petcd.stop()
    petcdutl("defrag", "--data-dir", str(petcd.data_dir))
    petcd.start()
    assert keyspace(petcd)[1][0]["value"] == "dg=="  # base64 "v"


def test_defrag_errors(tmp_path: Path, servers: ServerGroup) -> None:
    missing = petcdutl("defrag", "--data-dir", str(tmp_path / "none"), check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith(
        f"Error: Failed to defragment etcd data[{tmp_path / 'none'}] "
        f"(open {tmp_path / 'none' / 'member' / 'snap' / 'db'}: no such file or directory)"
    )
    no_flag = petcdutl("defrag", check=False)
    theirs = etcdutl("defrag", check=False)
    assert (no_flag.returncode, no_flag.stderr.splitlines()[0]) == (theirs.returncode, theirs.stderr.splitlines()[0])
    # an etcd data dir is etcd's to defragment: refused without a file made in it
    etcd = Etcd351(tmp_path / "etcd", name="e1")
    servers.servers.append(etcd)
    etcd.start()
    etcd.stop()
    listing = sorted(str(p) for p in etcd.data_dir.rglob("*"))
    out = petcdutl("defrag", "--data-dir", str(etcd.data_dir), check=False)
    assert out.returncode == 1 and "is an etcd (bbolt) database" in out.stderr
    assert sorted(str(p) for p in etcd.data_dir.rglob("*")) == listing
