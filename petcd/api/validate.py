"""Request checks done before anything is proposed, as etcd's gRPC layer does them."""

from __future__ import annotations

from petcd import errors
from petcd.proto.etcdserverpb import rpc_pb2 as pb

_SORT_ORDERS = set(pb.RangeRequest.SortOrder.values())
_SORT_TARGETS = set(pb.RangeRequest.SortTarget.values())


def check_range(r: pb.RangeRequest) -> None:
    if not r.key:
        raise errors.EmptyKeyError()
    if r.sort_order not in _SORT_ORDERS or r.sort_target not in _SORT_TARGETS:
        raise errors.InvalidSortOptionError()


def check_put(r: pb.PutRequest) -> None:
    if not r.key:
        raise errors.EmptyKeyError()
    if r.ignore_value and r.value:
        raise errors.ValueProvidedError()
    if r.ignore_lease and r.lease != 0:
        raise errors.LeaseProvidedError()


def check_delete(r: pb.DeleteRangeRequest) -> None:
    if not r.key:
        raise errors.EmptyKeyError()


def check_txn(r: pb.TxnRequest, max_ops: int) -> None:
    _check_txn_ops(r, max_ops)
    _check_intervals(r.success)
    _check_intervals(r.failure)


def _check_txn_ops(r: pb.TxnRequest, max_ops: int) -> None:
    if len(r.compare) > max_ops or len(r.success) > max_ops or len(r.failure) > max_ops:
        raise errors.TooManyOpsError()
    for c in r.compare:
        if not c.key:
            raise errors.EmptyKeyError()
    for op in (*r.success, *r.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            check_range(op.request_range)
        elif kind == "request_put":
            check_put(op.request_put)
        elif kind == "request_delete_range":
            check_delete(op.request_delete_range)
        elif kind == "request_txn":
            _check_txn_ops(op.request_txn, max_ops)
        else:
            raise errors.KeyNotFoundError()  # an empty op, as etcd answers it


class _Deletes:
    """Delete ranges of one branch; an empty end is a single key, '' bounds nothing."""

    def __init__(self) -> None:
        self.ranges: list[tuple[bytes, bytes | None]] = []  # end None = +infinity

    def add(self, key: bytes, end: bytes) -> None:
        self.ranges.append((key, end if end else key + b"\x00"))

    def extend(self, other: _Deletes) -> None:
        self.ranges.extend(other.ranges)

    def hits(self, key: bytes) -> bool:
        return any(begin <= key and (end is None or key < end) for begin, end in self.ranges)


def _check_intervals(ops: object) -> tuple[set[bytes], _Deletes]:
    """A put may not share its key with another put or a delete of the same branch.

    The two branches of a nested txn exclude each other, so a key put in both is fine.
    """
    dels = _Deletes()
    for op in ops:  # type: ignore[attr-defined]
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            dels.add(d.key, d.range_end)
    puts: set[bytes] = set()
    for op in ops:  # type: ignore[attr-defined]
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = _check_intervals(op.request_txn.success)
        puts_else, dels_else = _check_intervals(op.request_txn.failure)
        for k in puts_then:
            if k in puts or dels.hits(k):
                raise errors.DuplicateKeyError()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or dels.hits(k):
                raise errors.DuplicateKeyError()
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:  # type: ignore[attr-defined]
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or dels.hits(k):
            raise errors.DuplicateKeyError()
        puts.add(k)
    return puts, dels
