"""The Watch servicer on an in-process single-member EtcdServer, where the watchable store can be
looked at: closing a stream or its connection releases every watcher, the permission hook, the
progress interval, slow streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from petcd.api.kv import KVServicer
from petcd.api.watch import PERMISSION_DENIED_REASON, WatchServicer, add_to_server
from petcd.clock import LoopClock
from petcd.config import settings_from_flags
from petcd.mvcc.watch_sync import WatchSyncer
from petcd.mvcc.watchable import WatchableStore
from petcd.peer.member import build as build_member
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server.bootstrap import Member
from petcd.server.etcdserver import EtcdServer
from tests.harness import free_ports
from tests.harness.waiting import until

MEMBER_ID = 0xAB1


class Env:
    def __init__(self, srv: EtcdServer, watchable: WatchableStore, port: int) -> None:
        self.srv = srv
        self.watchable = watchable
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.kv = pb_grpc.KVStub(self.channel)  # type: ignore[no-untyped-call]
        self.watch = pb_grpc.WatchStub(self.channel)  # type: ignore[no-untyped-call]

    async def put(self, key: bytes, value: bytes = b"v") -> int:
        return int((await self.kv.Put(pb.PutRequest(key=key, value=value), timeout=10)).header.revision)


class Stream:
    """A Watch call driven from the test's loop."""

    def __init__(self, env: Env, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.reqs: asyncio.Queue[pb.WatchRequest | None] = asyncio.Queue()
        self.call = env.watch.Watch(self._gen(), metadata=metadata)

    async def _gen(self) -> AsyncIterator[pb.WatchRequest]:
        while True:
            r = await self.reqs.get()
            if r is None:
                return
            yield r

    def create(self, key: bytes, range_end: bytes = b"", **kw: object) -> None:
        self.reqs.put_nowait(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=range_end, **kw)))

    async def next(self, timeout: float = 10.0) -> pb.WatchResponse:
        r: pb.WatchResponse = await asyncio.wait_for(self.call.read(), timeout)
        assert r is not grpc.aio.EOF
        return r


def run(
    tmp_path: Path,
    body: Callable[[Env], Awaitable[None]],
    permit: Callable[..., bool] | None = None,
    progress_interval: float = 600.0,
    capacity: int = 128,
    flags: tuple[str, ...] = (),
) -> None:
    async def main() -> None:
        settings = settings_from_flags(
            ["--name=m1", f"--data-dir={tmp_path / 'data'}", "--quota-backend-bytes=1073741824", *flags],
            member_id=MEMBER_ID,
            cluster_id=0xC2,
            initial_members=[Member(MEMBER_ID, "m1", ["http://127.0.0.1:2380"])],
        )
        srv = (await build_member(settings, LoopClock())).server
        await srv.start()
        assert srv.store is not None
        watchable = WatchableStore(srv.store)
        syncer = WatchSyncer(watchable, srv.clock)
        syncer.start()
        server = grpc.aio.server()
        pb_grpc.add_KVServicer_to_server(KVServicer(srv), server)  # type: ignore[no-untyped-call]
        servicer = WatchServicer(srv, watchable, progress_interval=progress_interval, capacity=capacity, permit=permit)
        add_to_server(servicer, server)
        (port,) = free_ports(1)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        env = Env(srv, watchable, port)
        try:
            deadline = time.monotonic() + 10
            while not srv.leader:
                assert time.monotonic() < deadline, "no leader"
                await asyncio.sleep(0.02)
            await body(env)
        finally:
            await env.channel.close()
            await server.stop(0)
            await syncer.stop()
            await srv.stop()

    asyncio.run(main())


def test_closing_releases_watchers(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        ws = env.watchable
        await env.put(b"old")
        a, b = Stream(env), Stream(env)
        for i in range(3):
            a.create(b"k%d" % i)
        b.create(b"k", b"l")
        b.create(b"old", start_revision=1)
        for _ in range(3):
            assert (await a.next()).created
        assert (await b.next()).created and (await b.next()).created
        await until(lambda: ws.counts() == (5, 0, 0), "five synced watchers")
        a.call.cancel()  # the client goes away
        await until(lambda: ws.counts() == (2, 0, 0), "the canceled stream's watchers to go")
        b.reqs.put_nowait(None)  # half-close: etcd keeps the watchers
        rev = await env.put(b"k1")
        r = await b.next()
        while not r.events or r.events[0].kv.key == b"old":  # (old's history comes first)
            r = await b.next()
        assert [e.kv.mod_revision for e in r.events] == [rev]
        await env.channel.close()  # the whole connection
        await until(lambda: ws.counts() == (0, 0, 0), "every watcher to go")

    run(tmp_path, body)


def test_permission_hook(tmp_path: Path) -> None:
    def permit(context: object, key: bytes, end: bytes) -> bool:
        return key.startswith(b"ok/")

    async def body(env: Env) -> None:
        s = Stream(env)
        s.create(b"secret", watch_id=4)
        s.create(b"ok/", b"ok0")
        denied = await s.next()
        assert (denied.watch_id, denied.created, denied.canceled, denied.cancel_reason) == (
            4,
            True,
            True,
            PERMISSION_DENIED_REASON,
        )
        ok = await s.next()
        assert (ok.watch_id, ok.created, ok.canceled) == (0, True, False)
        s.call.cancel()

    run(tmp_path, body, permit=permit)


def test_progress_notify_interval(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        rev = await env.put(b"a")
        s = Stream(env)
        s.create(b"p", progress_notify=True)
        s.create(b"q")
        assert (await s.next()).created and (await s.next()).created
        r = await s.next(timeout=5)
        assert (r.watch_id, r.header.revision, len(r.events)) == (0, rev, 0)
        assert (r.header.cluster_id, r.header.member_id) == (0xC2, MEMBER_ID)
        s.call.cancel()

    run(tmp_path, body, progress_interval=0.3)


@pytest.mark.parametrize("capacity", [1, 4])
def test_tiny_buffers_lose_nothing(tmp_path: Path, capacity: int) -> None:
    """With a send buffer of one or four responses, watchers keep falling behind and catching up
    while writes go on; each still gets every event once, in order."""

    async def body(env: Env) -> None:
        streams = [Stream(env) for _ in range(3)]
        for s in streams:
            # two watchers per stream: every write queues two responses on each stream at once
            s.create(b"t/", b"t0")
            s.create(b"t/", b"t0")
            assert (await s.next()).created and (await s.next()).created
        n = 300
        written: list[int] = []

        async def writer(k: int) -> None:
            for i in range(n // 4):
                written.append(await env.put(b"t/%d" % k, b"%d" % i))

        async def reader(s: Stream) -> dict[int, list[int]]:
            got: dict[int, list[int]] = {0: [], 1: []}
            while len(got[0]) < n or len(got[1]) < n:
                r = await s.next()
                got[r.watch_id] += [e.kv.mod_revision for e in r.events]
            return got

        results = await asyncio.gather(*(writer(k) for k in range(4)), *(reader(s) for s in streams))
        for got in results[4:]:
            assert got == {0: sorted(written), 1: sorted(written)}
        if capacity == 1:
            assert env.watchable.victims_total > 0
        for s in streams:
            s.call.cancel()

    run(tmp_path, body, capacity=capacity)


def test_require_leader_stream_ends_without_leader(tmp_path: Path) -> None:
    """A stream opened with hasleader=true ends with "no leader" after three election timeouts
    without a leader, as etcd's do."""

    async def body(env: Env) -> None:
        plain = Stream(env)
        s = Stream(env, metadata=(("hasleader", "true"),))
        s.create(b"x")
        plain.create(b"x")
        assert (await s.next()).created and (await plain.next()).created
        # the member loses its leader (what the raft driver records when no leader is known)
        env.srv.leader = 0
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.next(timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert err.value.details() == "etcdserver: no leader"
        plain.create(b"y")
        assert (await plain.next()).created  # a stream that did not ask for a leader goes on
        plain.call.cancel()

    run(tmp_path, body, flags=("--heartbeat-interval=20", "--election-timeout=200"))
