"""Running a workload: clients on connections in one asyncio loop, or in several processes.

One Python process spends a few tens of microseconds of CPU per gRPC call, so against a fast server
one process can be the bottleneck; ``--procs N`` splits the connections, clients, requests and
``--rate`` evenly over N worker processes (spawned, so none inherits a gRPC channel), which start
sending together once all are connected. ``Total`` is from the first worker's start to the last
worker's end (CLOCK_MONOTONIC, the same clock in every process).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvloop

from petcd.benchmark.conn import ConnSpec, DialError, error_text, stub, wait_connected
from petcd.benchmark.loads import Client, Load, open_client
from petcd.benchmark.ratelimit import Limiter, TokenBucket, Unlimited
from petcd.benchmark.report import Results, Sample
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc

# how long the parent waits for spawned workers to connect before giving up
WORKER_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Job:
    """One worker's share of the run."""

    conn: ConnSpec
    load: Load
    first_conn: int  # connection numbers first_conn .. first_conn+conns-1 (endpoints in turn)
    conns: int
    clients: int
    indices: range  # the request numbers this worker sends
    rate: float  # this worker's share of --rate; 0 is no limit
    seed: int
    sample: bool
    compact_interval: float = 0.0  # put's --compact-interval: compact every so often (first worker only)
    compact_delta: int = 1000


@dataclass
class Outcome:
    start: float
    end: float
    reports: dict[str, Results] = field(default_factory=dict)


def _split(n: int, parts: int, k: int) -> tuple[int, int]:
    """(offset, size) of part k when n things are dealt out as evenly as possible."""
    base, extra = divmod(n, parts)
    return k * base + min(k, extra), base + (1 if k < extra else 0)


def plan(conn: ConnSpec, load: Load, *, conns: int, clients: int, total: int, rate: float, procs: int,
         seed: int, sample: bool, compact_interval: float = 0.0, compact_delta: int = 1000) -> list[Job]:
    if procs > conns or procs > clients:
        raise ValueError(f"--procs {procs} needs at least as many --conns ({conns}) and --clients ({clients})")
    jobs = []
    for k in range(procs):
        first, nconns = _split(conns, procs, k)
        _, nclients = _split(clients, procs, k)
        jobs.append(Job(conn, load, first, nconns, nclients, range(k, total, procs),
                        rate / procs if rate > 0 else 0.0, seed + k, sample,
                        compact_interval if k == 0 else 0.0, compact_delta))
    return jobs


async def run_job(job: Job, go: Callable[[], Awaitable[None]], now: Callable[[], float] = time.monotonic,
                  wall: Callable[[], float] = time.time) -> Outcome:
    """Connect, open the clients, wait for ``go``, then send this job's requests."""
    rng = random.Random(job.seed)
    channels = [job.conn.channel(job.first_conn + n) for n in range(job.conns)]
    try:
        await wait_connected(channels, job.conn)
        clients: list[Client] = [
            await open_client(job.load, channels[n % job.conns], job.conn.metadata, rng) for n in range(job.clients)
        ]
        reports = {name: Results() for name in job.load.reports}
        limiter: Limiter = TokenBucket(job.rate, now, asyncio.sleep) if job.rate > 0 else Unlimited()
        numbers = iter(job.indices)
        # unix time of a monotonic instant, for --sample's per-second rows
        to_unix = wall() - now()

        async def drive(c: Client) -> None:
            for i in numbers:  # shared: each client takes the next request number
                name, call = c.request(i)
                await limiter.wait()
                st = now()
                try:
                    await call()
                except Exception as exc:  # every failure is counted, as etcd's report does
                    reports[name].errors[error_text(exc)] += 1
                    continue
                lat = now() - st
                r = reports[name]
                r.latencies.append(lat)
                if job.sample:
                    r.samples.append(Sample(st + to_unix, lat))

        await go()
        start = now()
        compactor = (asyncio.create_task(compact_every(job, channels[0]))
                     if job.compact_interval > 0 else None)
        await asyncio.gather(*(drive(c) for c in clients))
        end = now()
        if compactor is not None:
            compactor.cancel()
            await asyncio.gather(compactor, return_exceptions=True)
        for c in clients:
            await c.close()
        return Outcome(start, end, reports)
    finally:
        for ch in channels:
            await ch.close(None)


async def compact_every(job: Job, channel: grpc.aio.Channel) -> None:
    """Compact to --compact-index-delta revisions behind the current one, every --compact-interval."""
    kv = stub(rpc.KVStub, channel)
    while True:
        await asyncio.sleep(job.compact_interval)
        try:
            rev = (await kv.Range(pb.RangeRequest(key=b"foo"), metadata=job.conn.metadata)).header.revision
            if rev - job.compact_delta > 0:
                await kv.Compact(pb.CompactionRequest(revision=rev - job.compact_delta), metadata=job.conn.metadata)
        except grpc.aio.AioRpcError as exc:
            if "required revision has been compacted" not in (exc.details() or ""):
                print(f"compaction failed: {error_text(exc)}", file=sys.stderr)


def merge(outcomes: list[Outcome]) -> Outcome:
    out = Outcome(min(o.start for o in outcomes), max(o.end for o in outcomes))
    for o in outcomes:
        for name, r in o.reports.items():
            out.reports.setdefault(name, Results()).merge(r)
    return out


async def _no_wait() -> None:
    return None


def _loop_run(coro: Coroutine[Any, Any, Outcome]) -> Outcome:
    # uvloop: less CPU per request on the client side, so more of it is left to the server
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_local(job: Job) -> Outcome:
    return _loop_run(run_job(job, _no_wait))


def _worker(job: Job, ready: Any, go: Any, results: Any) -> None:
    async def wait_go() -> None:
        ready.put(("ready", None))
        await asyncio.get_running_loop().run_in_executor(None, go.wait)

    try:
        results.put(("done", _loop_run(run_job(job, wait_go))))
    except DialError as exc:
        ready.put(("error", str(exc)))
    except Exception as exc:
        ready.put(("error", f"worker failed: {error_text(exc)}"))


def run_jobs(jobs: list[Job]) -> Outcome:
    """Run the jobs, in this process when there is one, in spawned workers otherwise."""
    if len(jobs) == 1:
        return run_local(jobs[0])
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(j, ready, go, results), daemon=True) for j in jobs]
    for p in procs:
        p.start()
    try:
        for _ in jobs:
            try:
                kind, msg = ready.get(timeout=WORKER_START_TIMEOUT)
            except queue.Empty:
                raise DialError("worker processes did not connect in time") from None
            if kind == "error":
                raise DialError(msg)
        go.set()
        outcomes: list[Outcome] = []
        while len(outcomes) < len(jobs):
            try:
                kind, got = results.get(timeout=1.0)
                outcomes.append(got)
                continue
            except queue.Empty:
                pass
            try:  # a worker that failed after starting says so on the ready queue
                kind, msg = ready.get_nowait()
                raise DialError(msg)
            except queue.Empty:
                pass
            if any(p.exitcode not in (None, 0) for p in procs):
                raise DialError("a worker process died")
        return merge(outcomes)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
