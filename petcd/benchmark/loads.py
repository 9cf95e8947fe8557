"""The request-driven workloads: put, range, txn-put, mixed, lease-keepalive.

A workload is a frozen, picklable description; ``open_client`` builds one client of it on a
connection. Request number ``i`` (0 <= i < --total) decides the request, so the keys of
``--sequential-keys`` are the same however requests are spread over clients and processes.

Keys are etcd benchmark's: the number, zig-zag varint encoded (Go's ``binary.PutVarint``), at the
start of ``--key-size`` zero bytes.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from petcd.benchmark.conn import EOF, stub
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc

Metadata = tuple[tuple[str, str], ...]


def varint(n: int) -> bytes:
    """Go's ``binary.PutVarint`` bytes: zig-zag, then 7 bits a byte, low first."""
    u = (n << 1) ^ (n >> 63) if n >= 0 else ((n << 1) ^ -1) & ((1 << 64) - 1)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def bench_key(n: int, key_size: int) -> bytes:
    v = varint(n)
    if len(v) > key_size:
        raise ValueError(f"key {n} needs {len(v)} bytes, more than --key-size {key_size}")
    return v + bytes(key_size - len(v))


def check_key_space(key_size: int, key_space_size: int) -> None:
    """Refuse a key space whose largest key does not fit --key-size (etcd's tool would crash)."""
    if key_space_size <= 0:
        raise ValueError(f"expected positive --key-space-size, got ({key_space_size})")
    need = len(varint(key_space_size - 1))
    if need > key_size:
        raise ValueError(f"--key-size {key_size} is too small for --key-space-size {key_space_size} "
                         f"(its largest key needs {need} bytes)")


class CheckFailed(Exception):
    """A response that does not say what the request asked for."""


Call = Callable[[], Awaitable[None]]


class Client(abc.ABC):
    """One benchmark client: ``request(i)`` says which report the request counts in and how to send it."""

    @abc.abstractmethod
    def request(self, i: int) -> tuple[str, Call]: ...

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class PutLoad:
    key_size: int
    value: bytes
    key_space_size: int
    sequential: bool
    name: str = "put"
    reports: tuple[str, ...] = ("put",)


@dataclass(frozen=True)
class RangeLoad:
    key: bytes
    range_end: bytes
    serializable: bool
    name: str = "range"
    reports: tuple[str, ...] = ("range",)


@dataclass(frozen=True)
class TxnPutLoad:
    key_size: int
    value: bytes
    key_space_size: int
    txn_ops: int
    name: str = "txn-put"
    reports: tuple[str, ...] = ("txn-put",)


@dataclass(frozen=True)
class MixedLoad:
    """Reads and writes at ``rw_ratio`` reads per write; reads range [key, range_end) up to ``limit``."""

    key_size: int
    value: bytes
    key_space_size: int
    rw_ratio: float
    key: bytes
    range_end: bytes
    limit: int
    serializable: bool
    name: str = "mixed"
    reports: tuple[str, ...] = ("read", "write")


@dataclass(frozen=True)
class KeepAliveLoad:
    ttl: int = 100  # etcd's benchmark grants 100 s leases
    name: str = "lease-keepalive"
    reports: tuple[str, ...] = ("lease-keepalive",)


Load = PutLoad | RangeLoad | TxnPutLoad | MixedLoad | KeepAliveLoad


class _KV(Client):
    def __init__(self, channel: grpc.aio.Channel, md: Metadata) -> None:
        self.kv = stub(rpc.KVStub, channel)
        self.md = md

    async def put(self, req: pb.PutRequest) -> None:
        await self.kv.Put(req, metadata=self.md)

    async def range(self, req: pb.RangeRequest) -> None:
        await self.kv.Range(req, metadata=self.md)


class _Put(_KV):
    def __init__(self, load: PutLoad, channel: grpc.aio.Channel, md: Metadata, rng: random.Random) -> None:
        super().__init__(channel, md)
        self.load, self.rng = load, rng

    def request(self, i: int) -> tuple[str, Call]:
        ld = self.load
        n = i % ld.key_space_size if ld.sequential else self.rng.randrange(ld.key_space_size)
        req = pb.PutRequest(key=bench_key(n, ld.key_size), value=ld.value)
        return "put", lambda: self.put(req)


class _Range(_KV):
    def __init__(self, load: RangeLoad, channel: grpc.aio.Channel, md: Metadata) -> None:
        super().__init__(channel, md)
        self.req = pb.RangeRequest(key=load.key, range_end=load.range_end, serializable=load.serializable)

    def request(self, i: int) -> tuple[str, Call]:
        return "range", lambda: self.range(self.req)


class _TxnPut(_KV):
    def __init__(self, load: TxnPutLoad, channel: grpc.aio.Channel, md: Metadata) -> None:
        super().__init__(channel, md)
        self.load = load

    async def txn(self, req: pb.TxnRequest) -> None:
        await self.kv.Txn(req, metadata=self.md)

    def request(self, i: int) -> tuple[str, Call]:
        ld = self.load
        ops = [
            pb.RequestOp(request_put=pb.PutRequest(
                key=bench_key((i * ld.txn_ops + j) % ld.key_space_size, ld.key_size), value=ld.value))
            for j in range(ld.txn_ops)
        ]
        req = pb.TxnRequest(success=ops)
        return "txn-put", lambda: self.txn(req)


class _Mixed(_KV):
    def __init__(self, load: MixedLoad, channel: grpc.aio.Channel, md: Metadata, rng: random.Random) -> None:
        super().__init__(channel, md)
        self.load, self.rng = load, rng
        self.read = pb.RangeRequest(key=load.key, range_end=load.range_end, limit=load.limit,
                                    serializable=load.serializable)

    def request(self, i: int) -> tuple[str, Call]:
        ld = self.load
        if self.rng.random() < ld.rw_ratio / (1 + ld.rw_ratio):
            return "read", lambda: self.range(self.read)
        req = pb.PutRequest(key=bench_key(i % ld.key_space_size, ld.key_size), value=ld.value)
        return "write", lambda: self.put(req)


class _KeepAlive(Client):
    """A lease of its own, kept alive over one long-lived LeaseKeepAlive stream."""

    def __init__(self, load: KeepAliveLoad, channel: grpc.aio.Channel, md: Metadata, lease_id: int) -> None:
        self.lease = stub(rpc.LeaseStub, channel)
        self.md = md
        self.ttl = load.ttl
        self.lease_id = lease_id
        self.stream = self.lease.LeaseKeepAlive(metadata=md)

    @classmethod
    async def granted(cls, load: KeepAliveLoad, channel: grpc.aio.Channel, md: Metadata) -> _KeepAlive:
        resp = await stub(rpc.LeaseStub, channel).LeaseGrant(pb.LeaseGrantRequest(TTL=load.ttl), metadata=md)
        return cls(load, channel, md, resp.ID)

    async def keepalive(self) -> None:
        await self.stream.write(pb.LeaseKeepAliveRequest(ID=self.lease_id))
        resp = await self.stream.read()
        if resp is EOF:
            raise CheckFailed("lease keep-alive stream closed by the server")
        if resp.ID != self.lease_id or resp.TTL <= 0:
            raise CheckFailed(f"lease {self.lease_id:x} not kept alive (ttl {resp.TTL})")

    def request(self, i: int) -> tuple[str, Call]:
        return "lease-keepalive", self.keepalive

    async def close(self) -> None:
        self.stream.cancel()
        try:  # leave no leases behind (etcd's tool leaves them to expire)
            await self.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=self.lease_id), metadata=self.md)
        except grpc.aio.AioRpcError:
            pass


async def open_client(load: Load, channel: grpc.aio.Channel, md: Metadata, rng: random.Random) -> Client:
    if isinstance(load, PutLoad):
        return _Put(load, channel, md, rng)
    if isinstance(load, RangeLoad):
        return _Range(load, channel, md)
    if isinstance(load, TxnPutLoad):
        return _TxnPut(load, channel, md)
    if isinstance(load, MixedLoad):
        return _Mixed(load, channel, md, rng)
    return await _KeepAlive.granted(load, channel, md)
