"""Concurrent clients and watchers against a cluster, recording what they saw.

Clients are asyncio gRPC clients, each with a seeded ``random.Random``: every op goes to a member
chosen at random and is recorded as an :class:`Op` with its invoke and return times
(``time.monotonic``). A write that fails in any way has an unknown outcome (it may have been
committed before the error); a read that fails is dropped (it observed nothing), and so is a
failed lease grant (no one learnt its ID). "Lease not found" is a definite answer, recorded, and
so is etcd's NOSPACE refusal of a put or txn (``Refused``: it changed nothing).

With ``Recorder.leases`` (the default) clients also grant leases (TTL ``WORKLOAD_LEASE_TTL``,
far longer than a run, so none expires: the model has no expiry), put keys on them, revoke them
(through any member) and now and then put with a lease they revoked, which must fail.

Watchers each hold one Watch stream on the workload's prefix from the first revision of the run;
when a stream breaks they reconnect (to the next member) from the revision after the last event
they saw, as etcd's clients do, and record every event.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from tests.robustness.linearizability import (
    Delete,
    DeleteOk,
    Get,
    GetOk,
    GrantOk,
    Input,
    LeaseGrant,
    LeaseNotFound,
    LeaseRevoke,
    Op,
    Output,
    Put,
    PutOk,
    Refused,
    RevokeOk,
    Txn,
    TxnOk,
)

PREFIX = b"rb/"
CALL_TIMEOUT = 2.0
# far longer than any run, so no lease of the workload expires in one: the model has no expiry
WORKLOAD_LEASE_TTL = 3600
LEASE_NOT_FOUND = "etcdserver: requested lease not found"
NOSPACE = "etcdserver: mvcc: database space exceeded"


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def now() -> float:
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class Event:
    revision: int
    key: bytes
    kind: str  # "put" or "delete"
    value: bytes


def _range_to_get(resp: pb.RangeResponse) -> tuple[bytes | None, int]:
    if not resp.kvs:
        return None, 0
    kv = resp.kvs[0]
    return kv.value, kv.mod_revision


def nospace(exc: grpc.RpcError) -> bool:
    """etcd's answer to what adds data while the quota is full (RESOURCE_EXHAUSTED)."""
    return exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and exc.details() == NOSPACE  # type: ignore[attr-defined]


def _lease_not_found(exc: grpc.aio.AioRpcError) -> bool:
    """etcd's definite answer for a lease that is gone (applied: nothing changed)."""
    return exc.code() == grpc.StatusCode.NOT_FOUND and exc.details() == LEASE_NOT_FOUND


def _sub_request(s: Put | Get | Delete | None) -> list[pb.RequestOp]:
    if s is None:
        return []
    if isinstance(s, Put):
        return [pb.RequestOp(request_put=pb.PutRequest(key=s.key, value=s.value, lease=s.lease))]
    if isinstance(s, Get):
        return [pb.RequestOp(request_range=pb.RangeRequest(key=s.key))]
    return [pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=s.key))]


def _txn_request(t: Txn) -> pb.TxnRequest:
    if t.target == "value":
        assert isinstance(t.expected, bytes)
        cmp = pb.Compare(key=t.key, target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=t.expected)
    else:
        assert isinstance(t.expected, int)
        cmp = pb.Compare(key=t.key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=t.expected)
    return pb.TxnRequest(compare=[cmp], success=_sub_request(t.then), failure=_sub_request(t.otherwise))


def _txn_output(t: Txn, resp: pb.TxnResponse) -> TxnOk:
    got: tuple[bytes | None, int] | None = None
    deleted = 0
    for r in resp.responses:
        which = r.WhichOneof("response")
        if which == "response_range":
            got = _range_to_get(r.response_range)
        elif which == "response_delete_range":
            deleted = int(r.response_delete_range.deleted)
    return TxnOk(bool(resp.succeeded), int(resp.header.revision), got, deleted)


async def execute(stub: pb_grpc.KVStub, inp: Input, timeout: float = CALL_TIMEOUT,
                  lease_stub: pb_grpc.LeaseStub | None = None) -> Output:
    """Send ``inp`` (a lease op through ``lease_stub``); its output, LeaseNotFound and Refused
    (a put or txn refused for space) included (raises grpc.aio.AioRpcError / TimeoutError on any
    other failure)."""
    try:
        return await _execute(stub, inp, timeout, lease_stub)
    except grpc.aio.AioRpcError as exc:
        if _lease_not_found(exc) and not isinstance(inp, Get | LeaseGrant):
            return LeaseNotFound()
        if nospace(exc) and isinstance(inp, Put | Txn):
            return Refused()
        raise


async def _execute(stub: pb_grpc.KVStub, inp: Input, timeout: float, lease_stub: pb_grpc.LeaseStub | None) -> Output:
    if isinstance(inp, LeaseGrant | LeaseRevoke):
        if lease_stub is None:
            raise ValueError(f"{inp!r} needs a lease stub")
        if isinstance(inp, LeaseGrant):
            gr = await lease_stub.LeaseGrant(pb.LeaseGrantRequest(TTL=inp.ttl), timeout=timeout)
            return GrantOk(int(gr.ID), int(gr.header.revision))
        vr = await lease_stub.LeaseRevoke(pb.LeaseRevokeRequest(ID=inp.lease), timeout=timeout)
        return RevokeOk(int(vr.header.revision))
    if isinstance(inp, Put):
        resp = await stub.Put(pb.PutRequest(key=inp.key, value=inp.value, lease=inp.lease), timeout=timeout)
        return PutOk(int(resp.header.revision))
    if isinstance(inp, Get):
        rr = await stub.Range(pb.RangeRequest(key=inp.key), timeout=timeout)
        value, mod = _range_to_get(rr)
        return GetOk(value, mod, int(rr.header.revision), int(rr.kvs[0].lease) if rr.kvs else 0)
    if isinstance(inp, Delete):
        dr = await stub.DeleteRange(pb.DeleteRangeRequest(key=inp.key), timeout=timeout)
        return DeleteOk(int(dr.deleted), int(dr.header.revision))
    tr = await stub.Txn(_txn_request(inp), timeout=timeout)
    return _txn_output(inp, tr)


def _is_read(inp: Input) -> bool:
    """Also a grant: an unknown one gave out no ID, so nothing can depend on it."""
    return isinstance(inp, Get | LeaseGrant) or (
        isinstance(inp, Txn) and not isinstance(inp.then, Put | Delete) and not isinstance(inp.otherwise, Put | Delete)
    )


def _never_sent(exc: Exception) -> bool:
    """gRPC could not connect to the member at all (it is down), so nothing was sent."""
    if not isinstance(exc, grpc.aio.AioRpcError) or exc.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    text = (exc.details() or "").lower()
    return "failed to connect" in text or "connection refused" in text


@dataclass
class Recorder:
    endpoints: Sequence[str]
    keys: Sequence[bytes]
    seed: int
    ops: list[Op] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    # lease ops too: each client grants a lease, puts keys on it, revokes it, and now and then
    # puts with a revoked one (which must fail)
    leases: bool = True
    # values padded to a length drawn log-uniformly up to this many bytes (0: short values)
    value_bytes: int = 0

    def _next_input(self, rnd: random.Random, cid: int, n: int, seen: dict[bytes, tuple[bytes | None, int]],
                    lease: _ClientLease | None = None) -> Input:
        key = rnd.choice(self.keys)
        value = f"c{cid}-{n}".encode()
        if self.value_bytes:
            # unique by its head; the padding only gives it size
            value += b"." * (int((self.value_bytes + 1) ** rnd.random()) - 1)
        if lease is not None and rnd.random() < 0.12:
            return lease.next_input(rnd, key, value)
        r = rnd.random()
        if r < 0.35:
            return Put(key, value, lease.current if lease is not None and rnd.random() < 0.3 else 0)
        if r < 0.70:
            return Get(key)
        if r < 0.75:
            return Delete(key)
        last_value, last_mod = seen.get(key, (None, 0))
        if r < 0.88 and last_value is not None:
            return Txn(key, "value", last_value, Put(key, value), Get(key))
        return Txn(key, "mod", last_mod, Put(key, value), Get(key))

    async def client(self, cid: int, until: float, pause: float = 0.0) -> None:
        rnd = random.Random(f"{self.seed}/{cid}")
        channels = [grpc.aio.insecure_channel(ep) for ep in self.endpoints]
        stubs = [pb_grpc.KVStub(ch) for ch in channels]  # type: ignore[no-untyped-call]
        lease_stubs = [pb_grpc.LeaseStub(ch) for ch in channels]  # type: ignore[no-untyped-call]
        seen: dict[bytes, tuple[bytes | None, int]] = {}
        lease = _ClientLease() if self.leases else None
        n = 0
        try:
            while now() < until:
                n += 1
                inp = self._next_input(rnd, cid, n, seen, lease)
                i = rnd.randrange(len(stubs))
                call = now()
                if lease is not None:
                    lease.sent(inp)
                try:
                    out = await execute(stubs[i], inp, lease_stub=lease_stubs[i])
                except (grpc.aio.AioRpcError, TimeoutError) as exc:
                    code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "timeout"
                    self.errors[code] = self.errors.get(code, 0) + 1
                    # a call that never reached a server had no effect; any other failed write may have
                    if not _is_read(inp) and not _never_sent(exc):
                        self.ops.append(Op(cid, call, math.inf, inp, None))
                    await asyncio.sleep(0.05)
                    continue
                self.ops.append(Op(cid, call, now(), inp, out))
                if lease is not None and isinstance(out, GrantOk):
                    lease.current = out.lease
                if isinstance(out, GetOk):
                    seen[self.ops[-1].key] = (out.value, out.mod_revision)
                elif isinstance(out, TxnOk) and out.got is not None:
                    seen[self.ops[-1].key] = out.got
                if pause:
                    await asyncio.sleep(pause)
        finally:
            for ch in channels:
                await ch.close()

    async def final_reads(self, cid: int, deadline: float) -> None:
        """A linearizable read of every key (retried until it succeeds), so the last write of
        each key is checked too."""
        channels = [grpc.aio.insecure_channel(ep) for ep in self.endpoints]
        stubs = [pb_grpc.KVStub(ch) for ch in channels]  # type: ignore[no-untyped-call]
        try:
            for i, key in enumerate(self.keys):
                while True:
                    call = now()
                    try:
                        out = await execute(stubs[i % len(stubs)], Get(key), timeout=5.0)
                        self.ops.append(Op(cid, call, now(), Get(key), out))
                        break
                    except (grpc.aio.AioRpcError, TimeoutError):
                        if now() > deadline:
                            raise
                        await asyncio.sleep(0.2)
        finally:
            for ch in channels:
                await ch.close()


@dataclass
class _ClientLease:
    """A client's lease: the one it holds (0: none) and the last it revoked."""

    current: int = 0
    revoked: int = 0

    def next_input(self, rnd: random.Random, key: bytes, value: bytes) -> Input:
        if not self.current:
            if self.revoked and rnd.random() < 0.3:
                return Put(key, value, self.revoked)  # must fail: the lease is gone
            return LeaseGrant(WORKLOAD_LEASE_TTL)
        if rnd.random() < 0.3:
            return LeaseRevoke(self.current)
        return Put(key, value, self.current)

    def sent(self, inp: Input) -> None:
        # whatever the outcome, a revoked lease (or one that may be) is not used for puts again
        if isinstance(inp, LeaseRevoke) and inp.lease == self.current:
            self.revoked, self.current = self.current, 0


@dataclass
class Watcher:
    endpoints: Sequence[str]
    start_revision: int
    first: int  # index of the endpoint to start on
    events: list[Event] = field(default_factory=list)
    reconnects: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def next_revision(self) -> int:
        return self.events[-1].revision + 1 if self.events else self.start_revision

    async def run(self, stop: asyncio.Event) -> None:
        i = self.first
        while not stop.is_set():
            ep = self.endpoints[i % len(self.endpoints)]
            try:
                await self._stream(ep, stop)
            except (grpc.aio.AioRpcError, TimeoutError):
                pass
            if stop.is_set():
                return
            self.reconnects += 1
            i += 1
            await asyncio.sleep(0.1)

    async def _stream(self, endpoint: str, stop: asyncio.Event) -> None:
        async with grpc.aio.insecure_channel(endpoint) as ch:
            stub = pb_grpc.WatchStub(ch)  # type: ignore[no-untyped-call]
            call = stub.Watch()
            await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=PREFIX, range_end=prefix_end(PREFIX), start_revision=self.next_revision)))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    read = asyncio.ensure_future(call.read())
                    done, _ = await asyncio.wait({read, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if stopper in done:
                        read.cancel()
                        call.cancel()
                        return
                    resp = read.result()
                    if resp is grpc.aio.EOF:
                        return
                    if resp.canceled:
                        self.problems.append(f"watch canceled by {endpoint}: {resp.cancel_reason!r}")
                        return
                    for ev in resp.events:
                        self._add(Event(
                            int(ev.kv.mod_revision), ev.kv.key,
                            "delete" if ev.type == mvccpb.Event.DELETE else "put", ev.kv.value,
                        ))
            finally:
                stopper.cancel()

    def _add(self, ev: Event) -> None:
        # one revision may hold several events (a revoke deletes all its lease's keys in one), of
        # distinct keys
        last = self.events[-1] if self.events else None
        if last is not None and ev.revision < last.revision:
            self.problems.append(f"event at revision {ev.revision} after one at {last.revision}")
        elif last is not None and ev.revision == last.revision:
            same = {e.key for e in reversed(self.events[-64:]) if e.revision == ev.revision}
            if ev.key in same:
                self.problems.append(f"two events on {ev.key!r} at revision {ev.revision}")
        self.events.append(ev)


async def _member_revision(endpoint: str) -> int | str:
    """The member's own revision (a serializable read), or why it could not be read."""
    try:
        async with grpc.aio.insecure_channel(endpoint) as ch:
            kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
            resp = await kv.Range(pb.RangeRequest(key=PREFIX, serializable=True, count_only=True), timeout=5)
            return int(resp.header.revision)
    except grpc.aio.AioRpcError as exc:
        return f"unknown: {exc.code().name}"


async def collect_events(endpoint: str, start_revision: int, last_revision: int, timeout: float = 20.0) -> list[Event]:
    """Every event on the prefix from start_revision through last_revision, from one member."""
    if last_revision < start_revision:
        return []
    w = Watcher([endpoint], start_revision, 0)
    stop = asyncio.Event()
    task = asyncio.ensure_future(w.run(stop))
    end = now() + timeout
    try:
        while not (w.events and w.events[-1].revision >= last_revision):
            if now() > end:
                raise AssertionError(
                    f"{endpoint}: watch from {start_revision} reached revision "
                    f"{w.events[-1].revision if w.events else None}, not {last_revision}, in {timeout:.0f}s "
                    f"(the member is at revision {await _member_revision(endpoint)}; {w.reconnects} reconnects; "
                    f"{w.problems[-3:]})"
                )
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    return w.events


@dataclass
class LeaseKeeper:
    """One lease with a key on it, kept alive through a random member every second (a fresh
    LeaseKeepAlive stream each time, as ``etcdctl lease keep-alive --once`` does, so followers
    forward most of them). While no two successful keep-alives are further apart than the TTL
    less a margin, the lease must never be found gone."""

    endpoints: Sequence[str]
    seed: int
    ttl: int = 5
    key: bytes = PREFIX + b"leased"
    lease_id: int = 0
    last_ok: float = 0.0
    max_gap: float = 0.0
    renewals: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def margin_held(self) -> bool:
        return self.max_gap <= self.ttl - 1.5

    async def run(self, stop: asyncio.Event) -> None:
        rnd = random.Random(f"{self.seed}/lease")
        channels = [grpc.aio.insecure_channel(ep) for ep in self.endpoints]
        try:
            leases = [pb_grpc.LeaseStub(ch) for ch in channels]  # type: ignore[no-untyped-call]
            kvs = [pb_grpc.KVStub(ch) for ch in channels]  # type: ignore[no-untyped-call]
            while not self.lease_id and not stop.is_set():
                try:
                    self.lease_id = int((await leases[0].LeaseGrant(pb.LeaseGrantRequest(TTL=self.ttl), timeout=3)).ID)
                    await kvs[0].Put(pb.PutRequest(key=self.key, value=b"l", lease=self.lease_id), timeout=3)
                    self.last_ok = now()
                except grpc.aio.AioRpcError:
                    self.lease_id = 0
                    await asyncio.sleep(0.2)
            while not stop.is_set():
                await asyncio.sleep(1.0)
                i = rnd.randrange(len(leases))
                try:
                    call = leases[i].LeaseKeepAlive(timeout=3)
                    await call.write(pb.LeaseKeepAliveRequest(ID=self.lease_id))
                    resp = await call.read()
                    call.cancel()
                except (grpc.aio.AioRpcError, TimeoutError):
                    continue
                if resp is grpc.aio.EOF:
                    continue
                t = now()
                self.max_gap = max(self.max_gap, t - self.last_ok)
                if resp.TTL <= 0:
                    if self.margin_held:
                        self.problems.append(
                            f"lease {self.lease_id:x} gone at a keep-alive through {self.endpoints[i]}, "
                            f"{t - self.last_ok:.1f}s after the last one (TTL {self.ttl}s)")
                    return
                self.last_ok = t
                self.renewals += 1
            # still alive at the end: its key is there
            if self.margin_held and now() - self.last_ok < self.ttl - 1.5:
                rr = await kvs[0].Range(pb.RangeRequest(key=self.key), timeout=5)
                if not rr.kvs or rr.kvs[0].lease != self.lease_id:
                    self.problems.append(f"the key of lease {self.lease_id:x} is gone although it was kept alive")
        finally:
            for ch in channels:
                await ch.close()
