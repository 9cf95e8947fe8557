"""petcdutl backup: etcdutl 3.5.1's legacy offline backup, on petcd's data dir; the backup is
started with --force-new-cluster (as etcdutl's is meant to be) and serves the same data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import lmdb
import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.utl.backup import PLACEHOLDER_NAME, PLACEHOLDER_PEER_URL
from petcd.wal import Snapshotter
from petcd.wal.reader import read_log
from petcd.wal.segments import list_segments
from petcd.wal.types import WalSnapshot
from tests.bbolt.etcd351 import Etcd351, etcdctl, etcdutl, hashkv, keyspace, petcdutl
from tests.harness import Server, ServerGroup

# clients served by the member process itself: no front-end processes to start (faster starts)
FAST = ("--client-frontends=0",)


def _fill(server: Server, n: int) -> None:
    """n puts (one raft entry each), an overwrite, a delete, a key with a lease."""
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        for i in range(n):
            kv.Put(pb.PutRequest(key=f"k/{i:03d}".encode(), value=f"v{i}".encode()), timeout=10)
        kv.Put(pb.PutRequest(key=b"k/000", value=b"again"), timeout=10)
        kv.DeleteRange(pb.DeleteRangeRequest(key=b"k/001"), timeout=10)
        lease = pb_grpc.LeaseStub(ch).LeaseGrant(pb.LeaseGrantRequest(TTL=600), timeout=10).ID
        kv.Put(pb.PutRequest(key=b"leased", value=b"x", lease=lease), timeout=10)


def _files(data_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in data_dir.rglob("*")
            if p.is_file() and p.name != "LOCK" and not p.name.endswith("-lock")}


def _members(server: Server) -> list[tuple[int, str, list[str]]]:
    doc = json.loads(etcdctl(server, "member", "list", "-w", "json").stdout)
    return [(int(m["ID"]), m.get("name", ""), m["peerURLs"]) for m in doc["members"]]


def _member_id(server: Server) -> int:
    doc = json.loads(etcdctl(server, "endpoint", "status", "-w", "json").stdout)
    return int(doc[0]["Status"]["header"]["member_id"])


def _backed_up(servers: ServerGroup, kind: str, tmp: Path, extra: tuple[str, ...] = ()) -> tuple[Server, Path]:
    """A stopped member of `kind` with data; (the member, the backup's dir for a Server named m1)."""
    src = Server(kind, tmp / "src", name="m1", extra_args=(*FAST, *extra)) if kind == "petcd" else Etcd351(
        tmp / "src", name="m1")
    servers.servers.append(src)
    src.start()
    return src, tmp / "bk" / "m1.data"


def _check_blanked(src: Path, bk: Path) -> None:
    """Conf changes and member attribute updates became empty entries at the same index and
    term, so the backend's consistent index still names the right entry; the rest is as it was."""
    before = read_log(list_segments(str(src / "member" / "wal")), WalSnapshot())
    after = read_log(list_segments(str(bk / "member" / "wal")), WalSnapshot())
    assert after.metadata == before.metadata and after.state == before.state
    assert [(e.index, e.term) for e in after.entries] == [(e.index, e.term) for e in before.entries]
    kinds = set()
    for old, new in zip(before.entries, after.entries, strict=True):
        if old.type == raftpb.EntryConfChange:
            kinds.add("conf")
            assert (new.type, new.data) == (raftpb.EntryNormal, b"")
        elif old.data and serverpb.InternalRequest.FromString(old.data).HasField("member_attr_set"):
            kinds.add("attr")
            assert (new.type, new.data) == (raftpb.EntryNormal, b"")
        else:
            assert new == old
    assert kinds == {"conf", "attr"}


@pytest.mark.parametrize("snapshot_count", [0, 8], ids=["wal-only", "with-raft-snapshot"])
def test_backup_starts_with_force_new_cluster_and_serves_the_same_data(
    servers: ServerGroup, tmp_path: Path, snapshot_count: int
) -> None:
    extra = (f"--snapshot-count={snapshot_count}",) if snapshot_count else ()
    src, bk = _backed_up(servers, "petcd", tmp_path, extra)
    _fill(src, 20)
    want = keyspace(src)
    want_hash = hashkv(src)
    member_id = _member_id(src)
    src.stop()
    files = _files(src.data_dir)

    out = petcdutl("backup", "--data-dir", str(src.data_dir), "--backup-dir", str(bk))
    assert out.stdout == ""  # as etcdutl: the log goes to stderr, nothing to stdout
    assert sorted(p.name for p in (bk / "member" / "wal").iterdir() if p.suffix == ".wal") == [
        "0000000000000000-0000000000000000.wal"]
    if not snapshot_count:
        _check_blanked(src.data_dir, bk)
    snaps = Snapshotter(bk / "member" / "snap").snap_names()
    assert bool(snaps) == bool(snapshot_count)
    if snaps:  # the raft snapshot knows only the placeholder member
        snap = Snapshotter(bk / "member" / "snap").read(snaps[0])
        data = serverpb.SnapshotData.FromString(snap.data)
        assert [(m.name, list(m.peer_urls)) for m in data.members] == [(PLACEHOLDER_NAME, [PLACEHOLDER_PEER_URL])]
        assert list(snap.metadata.conf_state.voters) == [data.members[0].id] != [member_id]

    # on other ports than the source's, as a backup taken elsewhere would be
    restored = Server("petcd", tmp_path / "bk", name="m1", extra_args=(*FAST, *extra, "--force-new-cluster"))
    servers.servers.append(restored)
    restored.start()
    assert keyspace(restored) == want
    assert hashkv(restored) == want_hash
    # etcd 3.5.1's result (test_etcd_backup_result): the old member alone, at etcd's placeholder URL
    assert _members(restored) == [(member_id, "m1", ["http://localhost:2380"])]
    etcdctl(restored, "put", "after", "backup")
    assert keyspace(restored)[0] == want[0] + 1
    # the source is as it was, but for the lock files (the WAL's LOCK, LMDB's db-lock) it used
    assert _files(src.data_dir) == files


def test_backup_of_one_member_of_a_cluster_starts_alone(servers: ServerGroup, tmp_path: Path) -> None:
    """The backup of one member of three (all stopped) becomes a one-member cluster of that member."""
    members = servers.start_cluster("petcd", 3, extra_args=FAST)
    _fill(members[0], 5)
    want, want_hash = keyspace(members[0]), hashkv(members[0])
    me = _member_id(members[1])
    for m in members:
        m.stop()
    bk = tmp_path / "bk" / "m2.data"
    petcdutl("backup", "--data-dir", str(members[1].data_dir), "--backup-dir", str(bk))
    restored = Server("petcd", tmp_path / "bk", name="m2", extra_args=(*FAST, "--force-new-cluster"))
    servers.servers.append(restored)
    restored.start()
    assert (keyspace(restored), hashkv(restored)) == (want, want_hash)
    assert _members(restored) == [(me, "m2", ["http://localhost:2380"])]
    etcdctl(restored, "put", "alone", "yes")  # a quorum of one


def test_etcd_backup_result(servers: ServerGroup, tmp_path: Path) -> None:
    """What the petcd test above expects, checked on real etcd 3.5.1 with etcdutl backup."""
    src, bk = _backed_up(servers, "etcd", tmp_path)
    _fill(src, 5)
    want, want_hash, member_id = keyspace(src), hashkv(src), _member_id(src)
    src.stop()
    etcdutl("backup", "--data-dir", str(src.data_dir), "--backup-dir", str(bk))
    restored = Etcd351(tmp_path / "bk", name="m1", extra_args=("--force-new-cluster",))
    servers.servers.append(restored)
    restored.start()
    assert (keyspace(restored), hashkv(restored)) == (want, want_hash)
    assert _members(restored) == [(member_id, "m1", ["http://localhost:2380"])]


def test_backup_with_separate_wal_dirs_and_without_v3(servers: ServerGroup, tmp_path: Path) -> None:
    src, _ = _backed_up(servers, "petcd", tmp_path, (f"--wal-dir={tmp_path / 'src-wal'}",))
    _fill(src, 3)
    src.stop()
    bk, bk_wal = tmp_path / "bk" / "m1.data", tmp_path / "bk-wal"
    # any process with the backend open (a member whose WAL is elsewhere, a reader) is refused
    env = lmdb.open(str(src.data_dir / "member" / "snap" / "db"), subdir=False, readonly=True, max_dbs=64)
    try:
        out = petcdutl("backup", f"--data-dir={src.data_dir}", f"--wal-dir={tmp_path / 'src-wal'}",
                       f"--backup-dir={bk}", check=False)
    finally:
        env.close()
    assert out.returncode == 1 and f"is open in process {os.getpid()}" in out.stderr, out.stderr
    assert not bk.exists()
    petcdutl("backup", f"--data-dir={src.data_dir}", f"--wal-dir={tmp_path / 'src-wal'}", f"--backup-dir={bk}",
             f"--backup-wal-dir={bk_wal}", "--with-v3=false")
    assert not (bk / "member" / "wal").exists() and any(bk_wal.glob("*.wal"))
    restored = Server("petcd", tmp_path / "bk", name="m1", extra_args=(*FAST, f"--wal-dir={bk_wal}", "--force-new-cluster"))
    servers.servers.append(restored)
    restored.start()
    # without v3 the keys are not backed up: every v3 request in the WAL was made empty
    assert keyspace(restored)[1] == []
    etcdctl(restored, "put", "k", "v")
    assert keyspace(restored)[1][0]["key"] == "aw=="  # base64 "k"


def test_backup_refused_while_the_member_runs(servers: ServerGroup, tmp_path: Path) -> None:
    src, bk = _backed_up(servers, "petcd", tmp_path)
    etcdctl(src, "put", "k", "v")
    out = petcdutl("backup", "--data-dir", str(src.data_dir), "--backup-dir", str(bk), check=False)
    assert out.returncode == 1
    assert f"Error: a member is running on {src.data_dir} (its WAL lock" in out.stderr, out.stderr
    assert not bk.exists()  # etcdutl leaves <backup-dir>/member/snap behind; nothing is made here
    etcdctl(src, "put", "k", "v2")  # the member noticed nothing


def test_refusals_match_etcdutl(servers: ServerGroup, tmp_path: Path) -> None:
    """The same mistakes on a real etcd data dir (etcdutl) and on a petcd one (petcdutl): both
    exit 1 naming the same cause."""
    etcd = Etcd351(tmp_path / "e", name="m1")
    petcd = Server("petcd", tmp_path / "p", name="m1", extra_args=FAST)
    servers.servers += [etcd, petcd]
    for s in (etcd, petcd):
        s.start()
        s.stop()
    for run, src, root in ((etcdutl, etcd.data_dir, tmp_path / "e-bk"), (petcdutl, petcd.data_dir, tmp_path / "p-bk")):
        missing = run("backup", "--data-dir", str(root / "none"), "--backup-dir", str(root / "x"), check=False)
        assert missing.returncode == 1
        assert f"open {root / 'none' / 'member' / 'snap'}: no such file or directory" in missing.stderr
        dest = root / "full"
        (dest / "member" / "snap").mkdir(parents=True)
        (dest / "member" / "snap" / "db").write_bytes(b"")
        (dest / "member" / "snap" / "x y").write_bytes(b"")
        full = run("backup", "--data-dir", str(src), "--backup-dir", str(dest), check=False)
        assert full.returncode == 1
        text = full.stderr.replace('\\"', '"')  # etcdutl's text is inside a JSON string
        assert f'expected "{dest / "member" / "snap"}" to be empty, got ["db" "x y"]' in text, full.stderr
    # etcd's data dir is etcdutl's to back up: petcdutl refuses without writing anything
    out = petcdutl("backup", "--data-dir", str(etcd.data_dir), "--backup-dir", str(tmp_path / "x"), check=False)
    assert out.returncode == 1 and "is an etcd (bbolt) database" in out.stderr
    assert not (tmp_path / "x").exists()


FLAG_CASES = [
    [], ["--help"], ["-h"], ["--bogus"], ["--data-dir"], ["--with-v3=x"], ["-data-dir", "x"], ["-x"],
    ["-hx"], ["-w"], ["--data-dir=x"], ["-w", "json", "--bogus"], ["--help=false"], ["-h=false", "--backup-dir=b"],
    ["--with-v3", "false", "--data-dir", "d"], ["--write-out=json", "-h"], ["extra", "-h"],
]


@pytest.mark.parametrize("args", FLAG_CASES, ids=lambda a: " ".join(a) or "no-args")
def test_flags_usage_and_errors_match_etcdutl(args: list[str]) -> None:
    theirs = etcdutl("backup", *args, check=False)
    ours = petcdutl("backup", *args, check=False)
    assert ours.returncode == theirs.returncode
    assert ours.stdout == theirs.stdout.replace("etcdutl", "petcdutl")
    assert ours.stderr == theirs.stderr.replace("etcdutl", "petcdutl")


def test_global_write_out_before_the_command(tmp_path: Path) -> None:
    theirs = etcdutl("-w", "json", "backup", "--bogus", check=False)
    ours = petcdutl("-w", "json", "backup", "--bogus", check=False)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr.replace("etcdutl", "petcdutl"))
