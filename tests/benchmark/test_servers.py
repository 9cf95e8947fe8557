"""petcd-benchmark against a petcd single member and a real etcd 3.5.1: every subcommand with a
small --total; the summary must be in etcd benchmark's layout, its counts must be the requests
sent, and what the requests wrote must really be in the store (revisions, keys, values).

Each test uses its own key size, so the keys of one test never collide with another's.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc
from tests.benchmark.helpers import Grpc, assert_keys, bench, only_errors, summaries, varint_key
from tests.harness import Server

pytestmark = pytest.mark.etcd


def stub_hashkv(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as ch:
        maint = rpc.MaintenanceStub(ch)  # type: ignore[no-untyped-call]
        return int(maint.HashKV(pb.HashKVRequest(revision=0)).hash)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[Grpc]:
    c = Grpc(server.endpoint)
    yield c
    c.close()


def test_put_sequential_keys_are_written(server: Server, client: Grpc) -> None:
    rev = client.revision()
    r = bench("--endpoints", server.endpoint, "--conns", "2", "--clients", "8", "put", "--total", "100",
              "--sequential-keys", "--key-space-size", "100", "--val-size", "256")
    assert r.rc == 0, r
    [s] = summaries(r.stdout)
    assert s.ok == 100 and not s.errors
    assert s.fastest <= s.average <= s.slowest and s.rps > 0
    assert list(s.percentiles) == ["10", "25", "50", "75", "90", "95", "99"]  # 99.9 needs 1000 requests
    assert client.revision() == rev + 100  # one revision per put: no more, no fewer
    assert_keys(client, [varint_key(i, 8) for i in range(100)], 256)
    assert client.get(varint_key(100, 8)).count == 0


def test_put_random_keys_stay_in_the_key_space_and_procs_split_the_work(server: Server, client: Grpc) -> None:
    rev = client.revision()
    r = bench("--endpoints", server.endpoint, "--conns", "2", "--clients", "4", "--procs", "2", "put",
              "--total", "60", "--key-size", "3", "--key-space-size", "5", "--val-size", "7", "--check-hashkv")
    assert r.rc == 0, r
    [s] = summaries(r.stdout)
    assert s.ok == 60
    hashkv = stub_hashkv(server.endpoint)
    assert f"HashKV Summary:\n\tHashKV: {hashkv}\n\tEndpoint: {server.endpoint}\n\tTime taken to get hashkv: " in r.stdout
    assert "\tDB size: " in r.stdout
    assert client.revision() == rev + 60
    space = {varint_key(i, 3) for i in range(5)}
    got = pb.RangeRequest(key=b"\0", range_end=b"\0", keys_only=True)
    written = {kv.key for kv in client.kv.Range(got).kvs if len(kv.key) == 3}
    assert written and written <= space


def test_txn_put(server: Server, client: Grpc) -> None:
    rev = client.revision()
    r = bench("--endpoints", server.endpoint, "--clients", "4", "txn-put", "--total", "25", "--txn-ops", "4",
              "--key-space-size", "100", "--key-size", "9", "--val-size", "16")
    assert r.rc == 0, r
    [s] = summaries(r.stdout)
    assert s.ok == 25
    assert client.revision() == rev + 25  # a txn is one revision
    assert_keys(client, [varint_key(i, 9) for i in range(100)], 16)


@pytest.mark.parametrize("consistency,word", [("l", "linearizable"), ("s", "serializable")])
def test_range(server: Server, client: Grpc, consistency: str, word: str) -> None:
    client.kv.Put(pb.PutRequest(key=b"bench-range/a", value=b"x"))
    rev = client.revision()
    r = bench("--endpoints", server.endpoint, "--clients", "4", "range", "bench-range/a", "bench-range/z",
              "--total", "50", "--consistency", consistency)
    assert r.rc == 0, r
    assert r.stdout.startswith(f"bench with {word} range\n")
    [s] = summaries(r.stdout)
    assert s.ok == 50
    assert client.revision() == rev  # reads write nothing


def test_range_errors_are_counted_and_fail_the_run(server: Server) -> None:
    r = bench("--endpoints", server.endpoint, "range", "", "--total", "7")
    assert r.rc == 1, r
    assert only_errors(r.stdout) == {"etcdserver: key is not provided": 7}


def test_lease_keepalive(server: Server, client: Grpc) -> None:
    before = set(client.leases())
    r = bench("--endpoints", server.endpoint, "--clients", "3", "lease-keepalive", "--total", "60")
    assert r.rc == 0, r
    [s] = summaries(r.stdout)
    assert s.ok == 60
    assert set(client.leases()) == before  # the benchmark's leases are revoked at the end


def test_mixed(server: Server, client: Grpc) -> None:
    rev = client.revision()
    r = bench("--endpoints", server.endpoint, "--clients", "4", "mixed", "--total", "80", "--key-size", "11",
              "--key-space-size", "80", "--val-size", "5", "--rw-ratio", "1", "--limit", "10")
    assert r.rc == 0, r
    reads = int(r.stdout.split("Total Read Ops: ")[1].split("\n")[0])
    writes = int(r.stdout.split("Total Write Ops: ")[1].split("\n")[0])
    assert reads + writes == 80 and reads > 0 and writes > 0
    rs, ws = summaries(r.stdout)
    assert (rs.ok, ws.ok) == (reads, writes)
    assert client.revision() == rev + writes
    written = [k for k in (varint_key(i, 11) for i in range(80)) if client.get(k).count]
    assert len(written) == writes


def test_watch(server: Server, client: Grpc) -> None:
    rev = client.revision()
    r = bench("--endpoints", server.endpoint, "--conns", "2", "--clients", "2", "watch", "--streams", "2",
              "--watch-per-stream", "5", "--watched-key-total", "2", "--sequential-keys", "--key-space-size", "2",
              "--key-size", "13", "--put-total", "20")
    assert r.rc == 0, r
    assert r.stdout.startswith("Watch creation summary:\n")
    assert "Watch events received summary:\n" in r.stdout
    created, events = summaries(r.stdout)
    assert created.ok == 10
    # 20 puts alternate over the 2 keys; 5 of the 10 watchers watch each key
    assert events.ok == 20 * 5
    assert client.revision() == rev + 20
    assert client.get(varint_key(0, 13)).kvs[0].value == b"data"


def test_put_compact_interval_compacts_while_putting(server: Server, client: Grpc) -> None:
    rev = client.revision()
    r = bench("--endpoints", server.endpoint, "--clients", "2", "put", "--total", "200", "--rate", "400",
              "--sequential-keys", "--key-space-size", "200", "--key-size", "15", "--compact-interval", "100ms",
              "--compact-index-delta", "10")
    assert r.rc == 0, r
    assert summaries(r.stdout)[0].ok == 200
    assert r.stderr == ""
    with pytest.raises(grpc.RpcError) as info:
        client.kv.Range(pb.RangeRequest(key=varint_key(0, 15), revision=rev + 1))
    assert "required revision has been compacted" in (info.value.details() or "")  # type: ignore[attr-defined]


def test_connections_go_to_the_endpoints_in_turn(both: tuple[Server, Server]) -> None:
    etcd, petcd = both
    clients = [Grpc(s.endpoint) for s in both]
    try:
        revs = [c.revision() for c in clients]
        r = bench("--endpoints", f"{etcd.endpoint},{petcd.endpoint}", "--conns", "2", "--clients", "2", "--procs", "1",
                  "put", "--total", "20", "--sequential-keys", "--key-space-size", "20", "--key-size", "17")
        assert r.rc == 0, r
        assert summaries(r.stdout)[0].ok == 20
        grew = [c.revision() - rev for c, rev in zip(clients, revs, strict=True)]
        assert sum(grew) == 20 and min(grew) > 0, grew
    finally:
        for c in clients:
            c.close()
