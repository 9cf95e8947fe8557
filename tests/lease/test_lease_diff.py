"""Differential tests of the Lease API: the same etcdctl commands and gRPC requests against real
etcd and the server under test (see tests/harness/README.md), outputs compared after normalising
lease ids, revisions and remaining TTLs."""

from __future__ import annotations

import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from tests.harness import Scenario, Server, ServerGroup, Step, assert_same, ctl, scenario
from tests.harness.grpcdiff import Call, Ctx, GrpcScenario, assert_same_grpc

NOT_FOUND = "etcdserver: requested lease not found"
GRANTED = ("L", r"lease ([0-9a-f]+) granted")
W = ("simple", "json", "fields")


def each_format(*args: str, rc: int = 0, expect: str = "") -> list[Step]:
    return [ctl(*args, "-w", fmt, rc=rc, expect=expect) for fmt in W]


def timetolive(*args: str) -> list[Step]:
    """timetolive in the formats whose remaining TTL the normaliser masks (-w fields shows it raw,
    and it may tick between the two servers). Keys are listed for leases with one key only:
    etcd lists several in no particular order."""
    return [ctl("lease", "timetolive", *args, "-w", fmt) for fmt in ("simple", "json")]


SCENARIOS: list[Scenario] = [
    scenario(
        "lease-basic",
        ctl("lease", "grant", "600", capture=GRANTED, expect="granted with TTL(600s)"),
        *each_format("lease", "grant", "300"),
        *timetolive("{L}"),
        ctl("put", "{p}a", "1", "--lease={L}"),
        *timetolive("{L}", "--keys"),
        ctl("put", "{p}b", "2", "--lease={L}"),
        ctl("put", "{p}c", "3"),
        *each_format("get", "{p}", "--prefix"),
        *each_format("lease", "keep-alive", "--once", "{L}"),
        ctl("lease", "revoke", "{L}", expect="revoked"),
        ctl("get", "{p}", "--prefix", "-w", "json"),  # both keys gone at one revision
        ctl("lease", "timetolive", "{L}", expect="already expired"),
        ctl("lease", "timetolive", "{L}", "-w", "json"),
        ctl("lease", "revoke", "{L}", rc=1, expect=NOT_FOUND),
        ctl("lease", "keep-alive", "--once", "{L}", rc=2, expect=NOT_FOUND),
        ctl("put", "{p}d", "v", "--lease={L}", rc=1, expect=NOT_FOUND),
    ),
    scenario(
        "lease-limits",
        ctl("lease", "grant", "1", expect="TTL(2s)"),  # the minimum TTL for the default timeouts
        ctl("lease", "grant", "0", expect="TTL(2s)"),
        ctl("lease", "grant", "9000000000", capture=GRANTED),
        ctl("lease", "timetolive", "{L}", "-w", "json"),
        ctl("lease", "grant", "9000000001", rc=1, expect="etcdserver: too large lease TTL"),
        ctl("lease", "revoke", "{L}"),
    ),
    scenario(
        "lease-move-keys",
        ctl("lease", "grant", "600", capture=GRANTED),
        ctl("lease", "grant", "600", capture=("M", r"lease ([0-9a-f]+) granted")),
        ctl("put", "{p}k1", "v", "--lease={L}"),
        ctl("put", "{p}k2", "v", "--lease={L}"),
        ctl("put", "{p}k3", "v", "--lease={L}"),
        ctl("put", "{p}k1", "v", "--lease={M}"),  # moves to M
        ctl("put", "{p}k2", "v"),  # loses its lease
        ctl("put", "{p}k3", "w", "--ignore-lease"),  # keeps L
        *timetolive("{L}", "--keys"),
        *timetolive("{M}", "--keys"),
        ctl("del", "{p}k1"),
        *timetolive("{M}", "--keys"),
        ctl("lease", "revoke", "{L}"),
        ctl("get", "{p}", "--prefix", "-w", "json"),
        ctl("lease", "revoke", "{M}"),
        ctl("get", "{p}", "--prefix", "-w", "json"),  # M had no keys left: no new revision
    ),
    scenario(
        "lease-list",
        ctl("lease", "list"),
        ctl("lease", "grant", "100"),
        ctl("lease", "grant", "50"),
        ctl("lease", "grant", "300"),
        *each_format("lease", "list"),  # soonest expiry first
        fresh=True,
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_lease_etcdctl(sc: Scenario, request: pytest.FixtureRequest, servers: ServerGroup) -> None:
    if sc.fresh:
        etcd = servers.start("etcd")
        target = servers.start_target()
    else:
        etcd, target = request.getfixturevalue("both")
    assert_same(sc, etcd, target)


def grant(ttl: int, lease_id: int = 0, *, code: str = "OK", capture: str | None = None) -> Call:
    return Call(
        "Lease.LeaseGrant",
        lambda c: pb.LeaseGrantRequest(TTL=ttl, ID=lease_id),
        code=code,
        capture=capture,
        note=f"grant ttl={ttl} id={lease_id}",
    )


def put_with(key: str, lease_id: int, code: str = "OK") -> Call:
    return Call(
        "KV.Put",
        lambda c: pb.PutRequest(key=c.k(key), value=b"v", lease=lease_id),
        code=code,
        note=f"put {key} lease={lease_id}",
    )


def ttl(lease_id: int, keys: bool = True) -> Call:
    return Call("Lease.LeaseTimeToLive", lambda c: pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys))


def revoke(lease_id: int, code: str = "OK") -> Call:
    return Call("Lease.LeaseRevoke", lambda c: pb.LeaseRevokeRequest(ID=lease_id), code=code)


def _range_all(c: Ctx) -> pb.RangeRequest:
    return pb.RangeRequest(key=c.k(), range_end=c.prefix_end())


# Client-chosen ids, used nowhere else in this module. Keys are listed (keys=True) only for a
# lease with one key: etcd lists several in no particular order.
A, B, NEG = 0x51A5E0001, 0x51A5E0002, -0x51A5E0003
GRPC_SCENARIOS = [
    GrpcScenario(
        "lease-grpc",
        (
            # time-to-live right after its grant, so the remaining TTL is granted - 1 on both
            grant(60, A),
            ttl(A, keys=False),
            grant(30, A, code="FAILED_PRECONDITION"),  # lease already exists
            grant(-3, B),  # raised to the minimum TTL (and expires soon after)
            grant(60, NEG),  # negative ids are accepted
            ttl(NEG),
            grant(9_000_000_001, 0, code="OUT_OF_RANGE"),
            grant(20, 0, capture="S"),  # server-chosen id
            put_with("k1", A),
            put_with("k2", A),
            put_with("k3", NEG),
            put_with("k4", 0x7FFF0001, code="NOT_FOUND"),
            ttl(0x7FFF0002),  # missing: TTL -1, not an error
            ttl(0),
            revoke(A),
            Call("KV.Range", _range_all),
            revoke(A, code="NOT_FOUND"),
            revoke(0, code="NOT_FOUND"),
            revoke(NEG),
            Call("KV.Range", _range_all),
        ),
    ),
]


@pytest.mark.parametrize("sc", GRPC_SCENARIOS, ids=[s.name for s in GRPC_SCENARIOS])
def test_lease_grpc(sc: GrpcScenario, both: tuple[Server, Server]) -> None:
    assert_same_grpc(sc, *both)
