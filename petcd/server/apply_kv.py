"""Executing KV requests against the MVCC store, with etcd's semantics.

Every member runs these on the same committed requests in the same order, so they
must be deterministic: no clock, no randomness, nothing outside the store and the
lessor. Errors are ``petcd.errors`` exceptions, returned to the proposer.

A Txn is evaluated in three passes, as etcd does: the compares of the whole nested
tree choose a path of branches (``_txn_path``); the chosen ops are checked (missing
keys for ignore_value/ignore_lease, missing leases, compacted or future revisions) so
that a failing txn changes nothing; then the ops run in one write txn that gives all
their changes one revision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from petcd import errors
from petcd.mvcc import CompactedError, FutureRevError, KVStore, RangeOptions
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.mvccpb import kv_pb2 as mvccpb

_SORT_KEYS: dict[int, Callable[[mvccpb.KeyValue], object]] = {
    pb.RangeRequest.KEY: lambda kv: kv.key,
    pb.RangeRequest.VERSION: lambda kv: kv.version,
    pb.RangeRequest.CREATE: lambda kv: kv.create_revision,
    pb.RangeRequest.MOD: lambda kv: kv.mod_revision,
    pb.RangeRequest.VALUE: lambda kv: kv.value,
}


class LeaseLookup(Protocol):
    def exists(self, lease_id: int) -> bool: ...


class ReadView(Protocol):
    """What range/compare need: the store itself or an open write txn."""

    def range(self, key: bytes, end: bytes, opts: RangeOptions) -> object: ...


def mvcc_error(exc: Exception) -> errors.PetcdError:
    """The domain error for an MVCC read error (mvcc keeps its own exception classes)."""
    if isinstance(exc, CompactedError):
        return errors.CompactedError()
    if isinstance(exc, FutureRevError):
        return errors.FutureRevisionError()
    raise exc


def do_range(view: ReadView, r: pb.RangeRequest, cur_rev: int) -> pb.RangeResponse:
    """Range with etcd's limit, sort, filter and count rules (raises petcd.errors exceptions)."""
    filtered = bool(r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision)
    limit = r.limit
    if r.sort_order != pb.RangeRequest.NONE or filtered:
        limit = 0  # sort and filter need everything; truncate afterwards
    if limit > 0:
        limit += 1  # one more than asked tells whether there is more
    try:
        rr = view.range(r.key, r.range_end, RangeOptions(limit=limit, rev=r.revision, count_only=r.count_only))
    except (CompactedError, FutureRevError) as exc:
        raise mvcc_error(exc) from None
    kvs: list[mvccpb.KeyValue] = list(rr.kvs)  # type: ignore[attr-defined]
    if filtered:
        kvs = [
            kv
            for kv in kvs
            if (not r.max_mod_revision or kv.mod_revision <= r.max_mod_revision)
            and (not r.min_mod_revision or kv.mod_revision >= r.min_mod_revision)
            and (not r.max_create_revision or kv.create_revision <= r.max_create_revision)
            and (not r.min_create_revision or kv.create_revision >= r.min_create_revision)
        ]
    order = r.sort_order
    if r.sort_target != pb.RangeRequest.KEY and order == pb.RangeRequest.NONE:
        order = pb.RangeRequest.ASCEND
    if order != pb.RangeRequest.NONE and not (r.sort_target == pb.RangeRequest.KEY and order == pb.RangeRequest.ASCEND):
        kvs.sort(key=_SORT_KEYS[r.sort_target], reverse=order == pb.RangeRequest.DESCEND)  # type: ignore[arg-type]
    resp = pb.RangeResponse(count=rr.count)  # type: ignore[attr-defined]
    if r.limit > 0 and len(kvs) > r.limit:
        kvs = kvs[: r.limit]
        resp.more = True
    resp.header.revision = cur_rev
    if r.keys_only:
        for kv in kvs:
            kv.value = b""
    resp.kvs.extend(kvs)
    return resp


class KVApplier:
    """Applies committed KV requests (put, delete, txn, compaction) to the store."""

    def __init__(self, store: KVStore, leases: LeaseLookup) -> None:
        self.store = store
        self.leases = leases

    # -- single ops -------------------------------------------------------------------

    def put(self, p: pb.PutRequest) -> pb.PutResponse:
        with self.store.write() as txn:
            # _put already set the header's revision: the txn's, which the store now has
            return self._put(txn, p)

    def delete_range(self, d: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        with self.store.write() as txn:
            resp = self._delete(txn, d)
        resp.header.revision = self.store.rev
        return resp

    def _put(self, txn: object, p: pb.PutRequest) -> pb.PutResponse:
        resp = pb.PutResponse()
        value, lease = p.value, p.lease
        if p.ignore_value or p.ignore_lease or p.prev_kv:
            prev = txn.range(p.key, b"", RangeOptions()).kvs  # type: ignore[attr-defined]
            if (p.ignore_value or p.ignore_lease) and not prev:
                raise errors.KeyNotFoundError()
            if p.ignore_value:
                value = prev[0].value
            if p.ignore_lease:
                lease = prev[0].lease
            if p.prev_kv and prev:
                resp.prev_kv.CopyFrom(prev[0])
        if lease != 0 and not self.leases.exists(lease):
            raise errors.LeaseNotFoundError()
        txn.put(p.key, value, lease)  # type: ignore[attr-defined]
        resp.header.revision = txn.rev  # type: ignore[attr-defined]
        return resp

    def _delete(self, txn: object, d: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        deleted = txn.delete_range(d.key, d.range_end)  # type: ignore[attr-defined]
        resp = pb.DeleteRangeResponse(deleted=len(deleted))
        resp.header.revision = txn.rev  # type: ignore[attr-defined]
        if d.prev_kv:
            resp.prev_kvs.extend(deleted)
        return resp

    # -- txn --------------------------------------------------------------------------

    def txn(self, t: pb.TxnRequest) -> pb.TxnResponse:
        with self.store.write() as txn:
            path = _txn_path(txn, t)
            self._check_txn(txn, t, path, 0)
            resp = self._run_txn(txn, t, path, [0])
        # only the outer header gets the txn's revision; each op's response carries the
        # revision it saw or made, and a nested txn's header stays empty, as in etcd
        resp.header.revision = self.store.rev
        return resp

    def read_only_txn(self, t: pb.TxnRequest) -> pb.TxnResponse:
        """A txn without writes, answered from the local store (after a read index)."""
        path = _txn_path(self.store, t)
        self._check_txn(self.store, t, path, 0)
        resp = self._run_txn(self.store, t, path, [0])
        resp.header.revision = self.store.rev
        return resp

    def _check_txn(self, txn: object, t: pb.TxnRequest, path: list[bool], at: int) -> int:
        """Check the chosen ops before anything runs; returns how much of path was used."""
        ops = t.success if path[at] else t.failure
        at += 1
        for op in ops:
            kind = op.WhichOneof("request")
            if kind == "request_put":
                p = op.request_put
                if p.ignore_value or p.ignore_lease:
                    if not txn.range(p.key, b"", RangeOptions()).kvs:  # type: ignore[attr-defined]
                        raise errors.KeyNotFoundError()
                if p.lease != 0 and not self.leases.exists(p.lease):
                    raise errors.LeaseNotFoundError()
            elif kind == "request_range":
                rev = op.request_range.revision
                if rev > self.store.rev:
                    raise errors.FutureRevisionError()
                if rev and rev < self.store.compact_rev:
                    raise errors.CompactedError()
            elif kind == "request_txn":
                at = self._check_txn(txn, op.request_txn, path, at)
        return at

    def _run_txn(self, txn: object, t: pb.TxnRequest, path: list[bool], at: list[int]) -> pb.TxnResponse:
        succeeded = path[at[0]]
        at[0] += 1
        resp = pb.TxnResponse(succeeded=succeeded)
        resp.header.SetInParent()  # present but empty in a nested txn, as etcd sends it
        for op in t.success if succeeded else t.failure:
            kind = op.WhichOneof("request")
            out = resp.responses.add()
            if kind == "request_range":
                rev = txn.rev  # type: ignore[attr-defined]
                out.response_range.CopyFrom(do_range(txn, op.request_range, rev))  # type: ignore[arg-type]
            elif kind == "request_put":
                out.response_put.CopyFrom(self._put(txn, op.request_put))
            elif kind == "request_delete_range":
                out.response_delete_range.CopyFrom(self._delete(txn, op.request_delete_range))
            elif kind == "request_txn":
                out.response_txn.CopyFrom(self._run_txn(txn, op.request_txn, path, at))
        return resp

    # -- compaction -------------------------------------------------------------------

    def check_compaction(self, rev: int) -> None:
        if rev <= self.store.compact_rev:
            raise errors.CompactedError()
        if rev > self.store.rev:
            raise errors.FutureRevisionError()


def _txn_path(view: object, t: pb.TxnRequest) -> list[bool]:
    """The branch taken at every txn on the executed path, in pre-order."""
    path: list[bool] = []

    def walk(t: pb.TxnRequest) -> None:
        ok = all(_compare(view, c) for c in t.compare)
        path.append(ok)
        for op in t.success if ok else t.failure:
            if op.WhichOneof("request") == "request_txn":
                walk(op.request_txn)

    walk(t)
    return path


def _compare(view: object, c: pb.Compare) -> bool:
    kvs = view.range(c.key, c.range_end, RangeOptions()).kvs  # type: ignore[attr-defined]
    if not kvs:
        if c.target == pb.Compare.VALUE:
            return False  # a missing key has no value to compare
        return _compare_kv(c, mvccpb.KeyValue())
    return all(_compare_kv(c, kv) for kv in kvs)


def _compare_kv(c: pb.Compare, kv: mvccpb.KeyValue) -> bool:
    target = c.target
    left: int | bytes
    right: int | bytes
    if target == pb.Compare.VALUE:
        left, right = kv.value, c.value
    elif target == pb.Compare.CREATE:
        left, right = kv.create_revision, c.create_revision
    elif target == pb.Compare.MOD:
        left, right = kv.mod_revision, c.mod_revision
    elif target == pb.Compare.VERSION:
        left, right = kv.version, c.version
    else:
        left, right = kv.lease, c.lease
    res = c.result
    if res == pb.Compare.EQUAL:
        return left == right
    if res == pb.Compare.NOT_EQUAL:
        return left != right
    if res == pb.Compare.GREATER:
        return left > right  # type: ignore[operator]
    return left < right  # type: ignore[operator]


def txn_is_read_only(t: pb.TxnRequest) -> bool:
    for op in (*t.success, *t.failure):
        kind = op.WhichOneof("request")
        if kind in ("request_put", "request_delete_range"):
            return False
        if kind == "request_txn" and not txn_is_read_only(op.request_txn):
            return False
    return True


def txn_has_put(t: pb.TxnRequest) -> bool:
    for op in (*t.success, *t.failure):
        kind = op.WhichOneof("request")
        if kind == "request_put":
            return True
        if kind == "request_txn" and txn_has_put(op.request_txn):
            return True
    return False
