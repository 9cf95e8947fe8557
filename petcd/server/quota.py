"""The backend quota at the front door, as etcd 3.5 charges it (its backendQuota): what a put,
txn or lease grant would add, and whether the member's database has room for it.

A request that does not fit raises this member's NOSPACE alarm through raft and is refused
(``EtcdServer.check_quota``). Only the size is looked at here, never the alarm: while an alarm is
raised, the apply chain (``petcd.server.apply.QuotaApplier``) refuses what adds data in log order,
so a member that has not yet applied a disarm does not refuse a write that comes after it.

The size weighed is the database's pages in use (dbSizeInUse), not the file's size as etcd weighs
bbolt's. bbolt reuses a page freed by the last commit at the next one, so in steady use its file
is its pages in use; LMDB keeps the pages freed by the last two commits for its two meta pages
(measured: about 40 KiB more, and a fresh file of 64 KiB with 28 KiB in use against bbolt's
20 KiB). Weighing the file, a quota of a few hundred KiB left petcd refusing puts soon after a
NOSPACE recovery, or from the start, where etcd accepted them. What this changes: pages freed by
a compaction count as room at once, where etcd counts them until a defrag shrinks the file.
"""

from __future__ import annotations

from petcd.proto.etcdserverpb import rpc_pb2 as pb

# etcd's estimate of what a key's metadata takes in the backend (a lease grant's cost is
# petcd.lease.service.LEASE_GRANT_QUOTA_COST)
KV_OVERHEAD = 256


def put_cost(r: pb.PutRequest) -> int:
    return KV_OVERHEAD + len(r.key) + len(r.value)


def txn_cost(r: pb.TxnRequest) -> int:
    """The larger of the two branches' puts (only one branch runs); nested txns are not charged,
    as etcd does not charge them (the apply chain still refuses their puts under NOSPACE)."""

    def branch(ops: list[pb.RequestOp]) -> int:
        return sum(put_cost(op.request_put) for op in ops if op.WhichOneof("request") == "request_put")

    return max(branch(list(r.success)), branch(list(r.failure)))


def fits(size_in_use: int, cost: int, quota: int) -> bool:
    """Whether a request of ``cost`` fits: the database must stay below the quota."""
    return size_in_use + cost < quota


__all__ = ["KV_OVERHEAD", "fits", "put_cost", "txn_cost"]
