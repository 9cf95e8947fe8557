"""The lease model against the real thing: a fixed sequence of KV and lease ops sent to etcd 3.5.1
and to petcd; the checker must accept each history (so the model agrees with etcd's answers:
revoke bumps, lease not found, detach, txn branches), and both must answer the same (lease IDs
matched by grant order)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import grpc
import pytest

from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import require_etcd, server_group
from tests.robustness.linearizability import (
    Delete,
    Get,
    GetOk,
    GrantOk,
    Input,
    LeaseGrant,
    LeaseRevoke,
    Op,
    Output,
    Put,
    Txn,
    check,
)
from tests.robustness.workload import execute

NEVER_GRANTED = 0x7777


def script(leases: list[int]) -> list[Input]:
    """The ops; ``leases[i]`` is the i-th granted lease (filled in as grants answer)."""
    def lease(i: int) -> int:
        return leases[i] if i < len(leases) else -1

    return [
        LeaseGrant(3600),
        Put(b"a", b"1", lease(0)),
        Put(b"b", b"2", lease(0)),
        Get(b"a"),
        LeaseRevoke(lease(0)),  # both keys go, in one revision
        Get(b"a"),
        Get(b"b"),
        LeaseRevoke(lease(0)),  # gone
        Put(b"a", b"3", lease(0)),  # gone: fails, changes nothing
        LeaseGrant(3600),
        LeaseRevoke(lease(1)),  # no keys: no new revision
        Put(b"c", b"4"),
        LeaseGrant(3600),
        Put(b"a", b"5", lease(2)),
        Put(b"a", b"6"),  # detached from the lease
        LeaseRevoke(lease(2)),
        Get(b"a"),
        Txn(b"a", "mod", 0, Get(b"a"), Put(b"a", b"7", lease(0))),  # the branch taken names a gone lease
        Txn(b"a", "mod", 0, Put(b"a", b"8", lease(0)), Get(b"a")),  # the one not taken does
        Put(b"e", b"9", NEVER_GRANTED),
        LeaseGrant(3600),
        Put(b"d", b"10", lease(3)),
        Delete(b"d"),
        LeaseRevoke(lease(3)),  # its key was deleted: no new revision
        Get(b"d"),
    ]


async def record(endpoint: str) -> list[Op]:
    leases: list[int] = []
    ops: list[Op] = []
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        lease_stub = pb_grpc.LeaseStub(ch)  # type: ignore[no-untyped-call]
        for n in range(len(script([]))):
            inp = script(leases)[n]
            call = asyncio.get_running_loop().time()
            out = await execute(kv, inp, timeout=5.0, lease_stub=lease_stub)
            ops.append(Op(0, call, asyncio.get_running_loop().time(), inp, out))
            if isinstance(out, GrantOk):
                leases.append(out.lease)
    return ops


def _normalised(ops: list[Op]) -> list[tuple[str, str]]:
    """Inputs and outputs with lease IDs replaced by their grant order."""
    order = {op.output.lease: i for i, op in enumerate(o for o in ops if isinstance(o.output, GrantOk))}  # type: ignore[union-attr]
    order[NEVER_GRANTED] = -2

    def sub(x: object) -> str:
        text = repr(x)
        for lease, i in order.items():
            text = text.replace(str(lease), f"L{i}")
        return text

    return [(sub(op.input), sub(op.output)) for op in ops]


def _out(o: Output | None) -> Output:
    assert o is not None
    return o


def test_the_model_accepts_what_etcd_and_petcd_answer(tmp_path: Path) -> None:
    require_etcd()
    with server_group(tmp_path) as group:
        etcd = group.start("etcd")
        petcd = group.start("petcd")
        got = {name: asyncio.run(record(s.endpoint)) for name, s in (("etcd", etcd), ("petcd", petcd))}
    for name, ops in got.items():
        assert all(not math.isinf(op.ret) for op in ops)
        v = check(ops)
        assert v.ok, f"{name}: {v.message}"
    etcd_ops = got["etcd"]
    # what the model's semantics rest on, as etcd answered
    revs = [op.revision() for op in etcd_ops]
    assert revs[4] == revs[3] + 1  # a revoke deleting two keys: one revision
    assert type(_out(etcd_ops[7].output)).__name__ == "LeaseNotFound"
    assert type(_out(etcd_ops[8].output)).__name__ == "LeaseNotFound"
    assert revs[10] == revs[6]  # a revoke without keys: no revision
    assert _out(etcd_ops[16].output) == GetOk(b"6", revs[14] or 0, revs[15] or 0)  # detached: kept
    assert type(_out(etcd_ops[17].output)).__name__ == "LeaseNotFound"
    assert type(_out(etcd_ops[18].output)).__name__ == "TxnOk"
    assert type(_out(etcd_ops[19].output)).__name__ == "LeaseNotFound"
    assert revs[23] == revs[22]  # the key had been deleted: no revision
    if _normalised(got["petcd"]) != _normalised(etcd_ops):
        diff = [(i, e, p) for i, (e, p) in enumerate(zip(_normalised(etcd_ops), _normalised(got["petcd"]), strict=True))
                if e != p]
        pytest.fail(f"petcd answers differently from etcd: {diff}")
