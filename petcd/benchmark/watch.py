"""``watch``: create watchers over streams, then put to the watched keys and receive the events.

As etcd's benchmark: ``--streams`` Watch streams (dealt over the connections), each creating
``--watch-per-stream`` watchers one after another on keys taken in turn from ``--watched-key-total``
keys; the first report is the watch creation latency (request sent -> ``created`` response). Then
``--put-total`` puts (value ``data``) go to the watched keys in turn, at ``--put-rate``, and every
watcher receives its events. The second report counts each event received; its latency is from
sending the put that made the event to the event's arrival (etcd's tool times only its own
hand-over of an event, which is ~0). A run that does not receive every expected event within
``--event-timeout`` reports the missing ones as errors.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from petcd.benchmark.conn import EOF, ConnSpec, error_text, stub, wait_connected
from petcd.benchmark.loads import bench_key
from petcd.benchmark.ratelimit import Limiter, TokenBucket, Unlimited
from petcd.benchmark.report import Results
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc


@dataclass(frozen=True)
class WatchLoad:
    streams: int
    watch_per_stream: int
    watched_key_total: int
    put_total: int
    put_rate: float
    key_size: int
    key_space_size: int
    sequential: bool
    event_timeout: float


@dataclass
class WatchOutcome:
    create: Results
    create_total: float
    events: Results
    events_total: float


def watched_keys(load: WatchLoad, rng: random.Random) -> list[bytes]:
    return [
        bench_key(i % load.key_space_size if load.sequential else rng.randrange(load.key_space_size), load.key_size)
        for i in range(load.watched_key_total)
    ]


class _Stream:
    """One Watch stream: creates its watchers in turn, then counts the events they receive."""

    def __init__(self, channel: grpc.aio.Channel, md: tuple[tuple[str, str], ...],
                 now: Callable[[], float], on_event: Callable[[int], None]) -> None:
        self.call = stub(rpc.WatchStub, channel).Watch(metadata=md)
        self.now = now
        self.created: asyncio.Queue[pb.WatchResponse] = asyncio.Queue()
        self.arrivals: list[tuple[int, float]] = []  # (mod revision, arrival time) per event
        self.failure = ""
        self.reader = asyncio.create_task(self.read(on_event))

    async def read(self, on_event: Callable[[int], None]) -> None:
        try:
            while True:
                resp = await self.call.read()
                if resp is EOF:
                    return
                if resp.created or resp.canceled:
                    await self.created.put(resp)
                t = self.now()
                for ev in resp.events:
                    self.arrivals.append((ev.kv.mod_revision, t))
                    on_event(1)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.failure = error_text(exc)
                await self.created.put(pb.WatchResponse(canceled=True, cancel_reason=self.failure))

    async def create(self, key: bytes, results: Results) -> bool:
        st = self.now()
        await self.call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key)))
        resp = await self.created.get()
        if resp.canceled or not resp.created:
            results.errors[resp.cancel_reason or "watch canceled"] += 1
            return False
        results.latencies.append(self.now() - st)
        return True


async def run_watch(load: WatchLoad, conn: ConnSpec, *, conns: int, clients: int, seed: int,
                    now: Callable[[], float] = time.monotonic) -> WatchOutcome:
    rng = random.Random(seed)
    keys = watched_keys(load, rng)
    channels = [conn.channel(n) for n in range(conns)]
    streams: list[_Stream] = []
    try:
        await wait_connected(channels, conn)
        received = 0
        all_in = asyncio.Event()
        expected = 0

        def on_event(n: int) -> None:
            nonlocal received
            received += n
            if received >= expected:
                all_in.set()

        # creation: every stream creates its watchers one after another, the streams side by side
        watchers: Counter[bytes] = Counter()
        order = iter(range(load.streams * load.watch_per_stream))
        create = Results()

        async def creator(s: _Stream) -> None:
            for _ in range(load.watch_per_stream):
                i = next(order)
                if await s.create(keys[i % len(keys)], create):
                    watchers[keys[i % len(keys)]] += 1

        streams = [_Stream(channels[n % conns], conn.metadata, now, on_event) for n in range(load.streams)]
        t0 = now()
        await asyncio.gather(*(creator(s) for s in streams))
        create_total = now() - t0

        # events: puts to the watched keys in turn, from --clients clients on the connections
        expected = sum(watchers[keys[i % len(keys)]] for i in range(load.put_total))
        if expected == 0:
            all_in.set()
        sent: dict[int, float] = {}  # put's revision -> when it was sent
        events = Results()
        limiter: Limiter = TokenBucket(load.put_rate, now, asyncio.sleep) if load.put_rate > 0 else Unlimited()
        puts = iter(range(load.put_total))
        stubs = [stub(rpc.KVStub, channels[n % conns]) for n in range(clients)]

        async def putter(kv: Any) -> None:
            for i in puts:
                await limiter.wait()
                st = now()
                try:
                    resp = await kv.Put(pb.PutRequest(key=keys[i % len(keys)], value=b"data"), metadata=conn.metadata)
                except grpc.aio.AioRpcError as exc:
                    events.errors["put failed: " + error_text(exc)] += 1
                    continue
                sent[resp.header.revision] = st

        t1 = now()
        await asyncio.gather(*(putter(kv) for kv in stubs))
        try:
            await asyncio.wait_for(all_in.wait(), load.event_timeout)
        except TimeoutError:
            pass
        events_total = now() - t1
        for s in streams:
            for rev, t in s.arrivals:
                if rev in sent:
                    events.latencies.append(t - sent[rev])
                else:
                    events.errors["event for a revision no put of this run made"] += 1
            if s.failure:
                events.errors[s.failure] += 1
        missing = expected - received
        if missing > 0:
            events.errors[f"events not received within {load.event_timeout:g}s"] += missing
        return WatchOutcome(create, create_total, events, events_total)
    finally:
        for s in streams:
            s.call.cancel()
            await asyncio.gather(s.reader, return_exceptions=True)
        for ch in channels:
            await ch.close(None)
