"""petcdutl snapshot status / restore against etcdutl 3.5.1, on snapshots saved from a real
etcd 3.5.1 (`etcdctl snapshot save`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from petcd.bbolt import BoltReader
from petcd.mvcc.revision import bytes_to_rev, main_of
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from tests.bbolt.etcd351 import Etcd351, etcdctl, etcdutl, fill, keyspace, leases, petcdutl, restore_args
from tests.harness import LOOPBACK, Server, free_ports, server_group


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, list[dict[str, object]], list[str]]]:
    """A real etcd 3.5.1 with data, its snapshot file, and what it served when saved."""
    root = tmp_path_factory.mktemp("saved")
    with server_group(root) as group:
        etcd = Etcd351(root / "src", name="src")
        group.servers.append(etcd)
        etcd.start()
        fill(etcd, 60)
        rev, kvs = keyspace(etcd)
        lease_ids = leases(etcd)
        path = root / "etcd.snapshot"
        etcdctl(etcd, "snapshot", "save", str(path))
        yield path, rev, kvs, lease_ids


def test_reader_sees_what_etcd_served(saved: tuple[Path, int, list[dict[str, object]], list[str]]) -> None:
    path, rev, kvs, _ = saved
    with BoltReader(path) as db:
        assert db.check() == []
        assert db.buckets() == sorted([b"alarm", b"auth", b"authRoles", b"authUsers", b"cluster", b"key",
                                       b"lease", b"members", b"members_removed", b"meta"])
        records = list(db.pairs(b"key"))
    assert main_of(bytes_to_rev(records[-1][0])) == rev
    latest: dict[str, mvccpb.KeyValue] = {}
    for k, v in records:
        kv = mvccpb.KeyValue.FromString(v)
        if len(k) == 18:  # tombstone
            latest.pop(kv.key.decode(), None)
        else:
            latest[kv.key.decode()] = kv
    assert sorted(latest) == sorted(base64.b64decode(str(kv["key"])).decode() for kv in kvs)


FORMATS = ["simple", "table", "json", "fields", "protobuf", "xyz"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_status_matches_etcdutl(saved: tuple[Path, int, list[dict[str, object]], list[str]], fmt: str) -> None:
    path = str(saved[0])
    theirs = etcdutl("snapshot", "status", path, "-w", fmt, check=False)
    ours = petcdutl("snapshot", "status", path, "-w", fmt, check=False)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)


def test_status_errors_match_etcdutl(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(5000))
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(3 * 4096))
    for args in ([str(tmp_path / "missing")], [str(junk)], [str(zeros)], [], ["a", "b"]):
        theirs = etcdutl("snapshot", "status", *args, check=False)
        ours = petcdutl("snapshot", "status", *args, check=False)
        assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr), args


def _start_petcd(root: Path, restore: list[str], extra_args: tuple[str, ...] = ()) -> tuple[Server, list[str]]:
    server = Server("petcd", root, name="p1", extra_args=extra_args)
    return server, [*restore, *restore_args(server)]


def test_restore_then_petcd_serves_the_snapshot(
    saved: tuple[Path, int, list[dict[str, object]], list[str]], tmp_path: Path
) -> None:
    path, rev, kvs, lease_ids = saved
    with server_group(tmp_path) as group:
        petcd, args = _start_petcd(tmp_path / "p", [str(path)])
        group.servers.append(petcd)
        petcdutl("snapshot", "restore", *args)
        petcd.start()
        assert keyspace(petcd) == (rev, kvs)
        assert leases(petcd) == lease_ids
        members = json.loads(etcdctl(petcd, "member", "list", "-w", "json").stdout)["members"]
        assert [(m["name"], m["peerURLs"]) for m in members] == [("p1", [petcd.peer_url])]
        # the same member and cluster ids etcdutl gives the same flags
        etcd = Etcd351(tmp_path / "e", name="p1", client_port=petcd.client_port, peer_port=petcd.peer_port)
        assert etcd.initial_cluster == petcd.initial_cluster
        etcdctl(petcd, "put", "after", "restore")
        assert keyspace(petcd)[0] == rev + 1
        # a restart replays nothing twice
        petcd.restart()
        assert keyspace(petcd)[0] == rev + 1
        ids = petcd.ids()
        petcd.stop()
        etcdutl("snapshot", "restore", str(path), *restore_args(etcd))
        group.servers.append(etcd)
        etcd.start()
        assert (etcd.ids().cluster_id, etcd.ids().member_id) == (ids.cluster_id, ids.member_id)


def test_restore_bump_revision_and_mark_compacted(
    saved: tuple[Path, int, list[dict[str, object]], list[str]], tmp_path: Path
) -> None:
    path, rev, kvs, _ = saved
    with server_group(tmp_path) as group:
        petcd, args = _start_petcd(tmp_path / "p", [str(path), "--bump-revision=1000", "--mark-compacted"])
        group.servers.append(petcd)
        petcdutl("snapshot", "restore", *args)
        petcd.start()
        new_rev, new_kvs = keyspace(petcd)
        assert new_rev == rev + 1000
        assert new_kvs == kvs
        old = etcdctl(petcd, "get", "k/", "--prefix", f"--rev={rev}", check=False)
        assert old.returncode != 0 and "required revision has been compacted" in old.stderr
        etcdctl(petcd, "put", "after", "bump")
        assert keyspace(petcd)[0] == rev + 1001


def test_restore_errors_match_etcdutl(
    saved: tuple[Path, int, list[dict[str, object]], list[str]], tmp_path: Path
) -> None:
    path = saved[0]
    corrupt = tmp_path / "corrupt.snapshot"
    data = bytearray(path.read_bytes())
    data[9000] ^= 0x01
    corrupt.write_bytes(data)
    no_hash = tmp_path / "nohash.snapshot"
    no_hash.write_bytes(path.read_bytes()[:-32])
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    cases = [
        [str(corrupt)],
        [str(no_hash)],
        [str(path), "--data-dir", str(full)],
        [str(path), "--name", "other"],
        [str(path), "--initial-cluster", "default=http://localhost:2380,default=http://localhost:2380"],
        [str(path), "--initial-cluster", "default=localhost:2380"],
        [],
    ]
    for i, case in enumerate(cases):
        out_dir = tmp_path / f"out{i}"
        argv = [*case] if "--data-dir" in case else [*case, "--data-dir", str(out_dir)]
        theirs = etcdutl("snapshot", "restore", *argv, check=False)
        shutil.rmtree(out_dir, ignore_errors=True)
        ours = petcdutl("snapshot", "restore", *argv, check=False)
        shutil.rmtree(out_dir, ignore_errors=True)
        their_error = [line for line in theirs.stderr.splitlines() if line.startswith("Error:")]
        our_error = [line for line in ours.stderr.splitlines() if line.startswith("Error:")]
        assert (ours.returncode, our_error) == (theirs.returncode, their_error), case
    # --mark-compacted without --bump-revision (etcd 3.6's rule and text)
    bad = petcdutl("snapshot", "restore", str(path), "--data-dir", str(tmp_path / "m"), "--mark-compacted",
                   check=False)
    assert bad.returncode == 128 and "--mark-compacted required if --revision-bump > 0" in bad.stderr


def test_restore_skip_hash_check_takes_a_file_without_trailer(
    saved: tuple[Path, int, list[dict[str, object]], list[str]], tmp_path: Path
) -> None:
    path, rev, kvs, _ = saved
    no_hash = tmp_path / "db"
    no_hash.write_bytes(path.read_bytes()[:-32])  # as copied from a data dir's member/snap/db
    with server_group(tmp_path) as group:
        petcd, args = _start_petcd(tmp_path / "p", [str(no_hash), "--skip-hash-check"])
        group.servers.append(petcd)
        petcdutl("snapshot", "restore", *args)
        petcd.start()
        assert keyspace(petcd) == (rev, kvs)


def test_restore_with_a_separate_wal_dir(
    saved: tuple[Path, int, list[dict[str, object]], list[str]], tmp_path: Path
) -> None:
    path, rev, kvs, _ = saved
    wal_dir = tmp_path / "wal"
    with server_group(tmp_path) as group:
        petcd, args = _start_petcd(tmp_path / "p", [str(path), f"--wal-dir={wal_dir}"],
                                   extra_args=(f"--wal-dir={wal_dir}",))
        group.servers.append(petcd)
        petcdutl("snapshot", "restore", *args)
        assert any(p.suffix == ".wal" for p in wal_dir.iterdir())
        assert not (petcd.data_dir / "member" / "wal").exists()
        petcd.start()
        assert keyspace(petcd) == (rev, kvs)
    again = petcdutl("snapshot", "restore", *args, check=False)
    theirs = etcdutl("snapshot", "restore", *args, check=False)
    assert (again.returncode, again.stderr.splitlines()[-1]) == (theirs.returncode, theirs.stderr.splitlines()[-1])


def test_restore_a_three_member_cluster(
    saved: tuple[Path, int, list[dict[str, object]], list[str]], tmp_path: Path
) -> None:
    """Every member restores the same snapshot with its own --name; the cluster elects a leader
    and every member serves the snapshot's keys."""
    path, rev, kvs, _ = saved
    ports = free_ports(6)
    names = ["a", "b", "c"]
    initial = ",".join(f"{n}=http://{LOOPBACK}:{ports[2 * i + 1]}" for i, n in enumerate(names))
    members = [Server("petcd", tmp_path / n, name=n, client_port=ports[2 * i], peer_port=ports[2 * i + 1],
                      initial_cluster=initial) for i, n in enumerate(names)]
    with server_group(tmp_path) as group:
        group.servers.extend(members)
        for m in members:
            petcdutl("snapshot", "restore", str(path), *restore_args(m))
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready()
        for m in members:
            assert keyspace(m) == (rev, kvs)
        listed = json.loads(etcdctl(members[0], "member", "list", "-w", "json").stdout)["members"]
        assert sorted(m["name"] for m in listed) == names
        etcdctl(members[1], "put", "after", "restore")
        assert all(keyspace(m)[0] == rev + 1 for m in members)


def test_restore_keeps_auth_data_and_says_it_is_not_enforced(tmp_path: Path) -> None:
    from petcd.backend import AUTH, AUTH_ROLES, AUTH_USERS, Backend
    from petcd.proto.authpb import auth_pb2 as authpb

    with server_group(tmp_path) as group:
        etcd = Etcd351(tmp_path / "src", name="src")
        group.servers.append(etcd)
        etcd.start()
        etcdctl(etcd, "put", "k", "v")
        etcdctl(etcd, "user", "add", "root:pw")
        etcdctl(etcd, "role", "add", "reader")
        etcdctl(etcd, "auth", "enable")
        snap = tmp_path / "auth.snapshot"
        etcdctl(etcd, "--user=root:pw", "snapshot", "save", str(snap))
    petcd = Server("petcd", tmp_path / "p", name="p1")
    out = petcdutl("snapshot", "restore", str(snap), *restore_args(petcd))
    assert "does not enforce authentication" in out.stderr
    with Backend(str(petcd.data_dir / "member" / "snap" / "db")) as be:
        assert be.get(AUTH, b"authEnabled") == b"\x01"
        users = dict(be.range(AUTH_USERS))
        assert authpb.User.FromString(users[b"root"]).name == b"root"
        assert {k for k, _ in be.range(AUTH_ROLES)} == {b"reader", b"root"}
