"""Corruption checks on a real 3-member petcd: one member's backend is corrupted on purpose (a
stored value changed while it is stopped), then the leader's periodic check raises CORRUPT for
that member and every member refuses writes with etcd's error, and the initial check keeps the
corrupted member from starting while a healthy member starts with the same flag."""

from __future__ import annotations

import time
from pathlib import Path

import lmdb
import pytest

from petcd.proto.mvccpb import kv_pb2
from tests.harness import Etcdctl, Server, require_etcd, server_group
from tests.harness.waiting import wait_until


@pytest.fixture(autouse=True)
def _etcd() -> None:
    require_etcd()


def corrupt_last_value(server: Server) -> bytes:
    """Change the value of the newest record in the stopped member's key bucket; returns its key."""
    env = lmdb.open(str(server.data_dir / "member" / "snap" / "db"), subdir=False, max_dbs=64)
    try:
        db = env.open_db(b"key", create=False)
        with env.begin(write=True, db=db) as txn:
            cur = txn.cursor()
            assert cur.last()
            rev_key, raw = cur.item()
            kv = kv_pb2.KeyValue.FromString(raw)
            kv.value = b"flipped on disk"
            txn.put(rev_key, kv.SerializeToString())
            return kv.key
    finally:
        env.close()


def alarms(ctl: Etcdctl) -> str:
    return ctl.run("alarm", "list").stdout


def test_periodic_check_raises_corrupt_for_the_corrupted_member(tmp_path: Path) -> None:
    with server_group(tmp_path) as group:
        members = group.start_cluster("petcd", extra_args=["--experimental-corrupt-check-time=1s"])
        ctl = Etcdctl([m.endpoint for m in members])
        for i in range(20):
            assert ctl.run("put", f"k{i}", f"v{i}").rc == 0
        victim = next(m for m in members if not _is_leader(m))
        victim_id = victim.ids().member_id
        victim.stop()
        key = corrupt_last_value(victim)
        # spawn, not start: start waits for `endpoint health`, which fails once the alarm is up
        victim.spawn()
        wait_until(lambda: "CORRUPT" in alarms(ctl), 30, "the CORRUPT alarm")
        assert alarms(ctl) == f"memberID:{victim_id} alarm:CORRUPT \n"
        health = Etcdctl(members[0].endpoint).run("endpoint", "health")
        assert health.rc != 0 and "Active Alarm(s): CORRUPT" in health.stderr, health
        for m in members:
            put = Etcdctl(m.endpoint).run("put", "after", "x")
            assert put.rc != 0 and "etcdserver: corrupt cluster" in put.stderr, put
        # reads still work, as in etcd (they do not go through the applier)
        assert Etcdctl(members[0].endpoint).run("get", key.decode(), "--print-value-only").rc == 0


def test_initial_check_refuses_a_corrupted_member_and_passes_a_healthy_one(tmp_path: Path) -> None:
    with server_group(tmp_path) as group:
        members = group.start_cluster("petcd")
        ctl = Etcdctl([m.endpoint for m in members])
        for i in range(10):
            assert ctl.run("put", f"k{i}", f"v{i}").rc == 0
        healthy, victim = members[0], members[2]
        victim_id = victim.ids().member_id
        # a healthy member restarts with the check on
        healthy.stop()
        healthy.extra_args = ("--experimental-initial-corrupt-check",)
        healthy.start()
        assert "initial corruption checking passed" in healthy.log_tail(400)
        victim.stop()
        corrupt_last_value(victim)
        victim.extra_args = ("--experimental-initial-corrupt-check",)
        victim.spawn()
        deadline = time.monotonic() + 30
        while victim.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not victim.is_running(), "a corrupted member started"
        tail = victim.log_tail(60)
        assert f"{victim_id:x} found data inconsistency with peers" in tail, tail
        # the others still serve: once they have a leader again (the victim may have led, and a
        # put a follower forwards to a leader that has just died is lost until the client retries)
        deadline = time.monotonic() + 30
        while (res := ctl.run("put", "still", "ok")).rc != 0:
            assert time.monotonic() < deadline, res
            time.sleep(0.2)


def _is_leader(m: Server) -> bool:
    status = Etcdctl(m.endpoint).run("endpoint", "status", "-w", "fields").stdout
    leader = next(line for line in status.splitlines() if line.startswith('"Leader"'))
    member = next(line for line in status.splitlines() if line.startswith('"MemberID"'))
    return leader.split(":")[1].strip() == member.split(":")[1].strip()
