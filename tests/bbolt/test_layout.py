"""etcd's bucket encodings <-> petcd's (etcd_layout), and a petcd backend's round trip through
an etcd snapshot file (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

from petcd.backend import ALARM, ALL_BUCKETS, CLUSTER, KEY, LEASE, MEMBERS, MEMBERS_REMOVED, META, Backend
from petcd.bbolt import BoltReader, db_status, import_etcd_db, save_etcd_snapshot
from petcd.bbolt.etcd_layout import (
    conf_state_json,
    from_etcd_bucket,
    member_from_etcd_json,
    member_to_etcd_json,
    to_etcd_bucket,
)
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb


def test_member_json_is_etcds() -> None:
    # as a real etcd 3.5.1 stored it in its members bucket
    etcd = b'{"id":13668033151171901709,"peerURLs":["http://127.0.0.1:23801"],"name":"e1"}'
    m = member_from_etcd_json(etcd)
    assert (m.id, m.name, list(m.peer_urls), list(m.client_urls), m.is_learner) == \
        (13668033151171901709, "e1", ["http://127.0.0.1:23801"], [], False)
    assert member_to_etcd_json(m) == etcd
    full = serverpb.MemberRecord(id=5, name="a<b", peer_urls=["http://p:1", "http://p:2"],
                                 client_urls=["http://c:1"], is_learner=True)
    raw = member_to_etcd_json(full)
    assert raw == (b'{"id":5,"peerURLs":["http://p:1","http://p:2"],"isLearner":true,'
                   b'"name":"a\\u003cb","clientURLs":["http://c:1"]}')
    assert member_from_etcd_json(raw) == full
    assert json.loads(conf_state_json([full, serverpb.MemberRecord(id=7)])) == \
        {"voters": [7], "learners": [5], "auto_leave": False}


def test_alarm_members_and_meta_mapping() -> None:
    members = [serverpb.MemberRecord(id=0xABC, name="m", peer_urls=["http://x:1"])]
    petcd_alarm = [(b"0000000000000abc/1", b"")]
    etcd_alarm = list(to_etcd_bucket(ALARM, petcd_alarm, members))
    assert etcd_alarm == [(pb.AlarmMember(memberID=0xABC, alarm=pb.NOSPACE).SerializeToString(), b"")]
    assert list(from_etcd_bucket(ALARM, etcd_alarm)) == petcd_alarm
    assert list(to_etcd_bucket(MEMBERS_REMOVED, [(b"0000000000000abc", b"removed")], members)) == \
        [(b"abc", b"removed")]
    assert list(from_etcd_bucket(MEMBERS_REMOVED, [(b"abc", b"removed")])) == [(b"0000000000000abc", b"removed")]
    etcd_members = list(to_etcd_bucket(MEMBERS, [], members))
    assert etcd_members == [(b"abc", b'{"id":2748,"peerURLs":["http://x:1"],"name":"m"}')]
    meta = dict(to_etcd_bucket(META, [(b"consistent_index", bytes(8))], members))
    assert meta[b"confState"] == b'{"voters":[2748],"auto_leave":false}'
    assert dict(from_etcd_bucket(META, meta.items())) == {b"consistent_index": bytes(8)}
    # etcd 3.6's empty revision-bump marker is not a record petcd keeps; unknown buckets are dropped
    assert list(from_etcd_bucket(KEY, [(b"r1", b"kv"), (b"r2", b"")])) == [(b"r1", b"kv")]
    assert list(from_etcd_bucket(b"unknown", [(b"a", b"b")])) == []


def test_backend_round_trip_through_an_etcd_snapshot(tmp_path: Path) -> None:
    src = Backend(str(tmp_path / "src.db"))
    content = {
        KEY: [(i.to_bytes(8, "big") + b"_" + bytes(8), b"kv%d" % i) for i in range(1, 3000)],
        LEASE: [((7).to_bytes(8, "big"), b"lease")],
        MEMBERS: [(b"0000000000000abc", serverpb.MemberRecord(id=0xABC, name="m", peer_urls=["http://x:1"])
                   .SerializeToString())],
        MEMBERS_REMOVED: [(b"0000000000000def", b"removed")],
        ALARM: [(b"0000000000000abc/1", b"")],
        CLUSTER: [(b"clusterVersion", b"3.5.0")],
        META: [(b"consistent_index", (9).to_bytes(8, "big")), (b"term", (2).to_bytes(8, "big"))],
    }
    for bucket, pairs in content.items():
        for k, v in pairs:
            src.put(bucket, k, v)
    src.force_commit()
    size = save_etcd_snapshot(src, tmp_path / "snap")
    src.close()
    assert (tmp_path / "snap").stat().st_size == size
    ds = db_status(tmp_path / "snap")
    assert ds.revision == 2999
    dest = Backend(str(tmp_path / "dest.db"))
    with BoltReader(tmp_path / "snap") as db:
        written = import_etcd_db(db, dest, batch_limit=500)
    assert written[KEY] == 2999
    for bucket in ALL_BUCKETS:
        assert dest.range(bucket) == sorted(content.get(bucket, [])), bucket
    dest.close()
