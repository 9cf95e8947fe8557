"""``check perf``: etcdctl 3.5.1's write-load check, with its load table, texts and verdict.

What it does, as etcdctl does it: refuse a prefix that already holds keys; open one client per
simulated client of the load; for the load's duration, a producer rate-limited to the load's
writes per second (a token bucket of burst 1, ending as soon as the next token would come after
the deadline) queues puts of a 256-byte key (the prefix, then a random varint, zero-padded) and a
1 KiB zero value, which the clients send as fast as they are answered; a progress bar counts the
seconds. Then the prefix is deleted (``--auto-compact``: and the history compacted at that
revision; ``--auto-defrag``: and every endpoint defragmented), and the numbers judged: errors
fail; a throughput at or under 90% of the load's rate fails; the slowest write over 0.5 s fails;
a standard deviation of the latencies over 0.1 s fails. ``PASS`` exits 0, ``FAIL`` exits 1.

Where petcdctl differs: ``--duration`` (petcdctl's own flag, default 60s as etcdctl's fixed
duration) shortens the run for smoke tests; the clients share the first client's auth token
rather than authenticating one by one; with several endpoints client i uses endpoint i mod n
(etcd's clients balance each call over all of them); the results are printed after the progress
bar's last line (etcdctl's bar finishes on a goroutine of its own, usually but not always before
the results are printed: both orders were seen in runs here). A first Ctrl-C ends the load early and still cleans up and judges, as etcdctl;
a second one kills the process.
"""

from __future__ import annotations

import asyncio
import math
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from petcd.ctl.base import B, D, Env, S
from petcd.ctl.cli import EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT, Command, CtlExit
from petcd.ctl.client import Client, RpcFailure
from petcd.ctl.printer import out
from petcd.ctl.progress import Bar
from petcd.proto.etcdserverpb import rpc_pb2 as pb


@dataclass(frozen=True)
class PerfLoad:
    limit: int  # writes per second
    clients: int
    duration: int  # seconds


LOADS = {"s": PerfLoad(150, 50, 60), "m": PerfLoad(1000, 200, 60), "l": PerfLoad(8000, 500, 60),
         "xl": PerfLoad(15000, 1000, 60)}
ALIASES = {"s": "s", "small": "s", "m": "m", "medium": "m", "l": "l", "large": "l", "xl": "xl", "xLarge": "xl"}
KEY_SIZE, VALUE_SIZE = 256, 1024
DEFAULT_PREFIX = "/etcdctl-check-perf/"
CLEANUP_TIMEOUT = 30.0  # seconds etcdctl gives the delete, the compaction and each defragmentation


def load_for(name: str) -> PerfLoad:
    if name not in ALIASES:
        raise CtlExit(EXIT_BAD_FEATURE, f"unknown load option {name}")
    return LOADS[ALIASES[name]]


def varint(n: int) -> bytes:
    """Go's binary.PutVarint: zig-zag, then 7 bits a byte, low first."""
    u = (n << 1) if n >= 0 else ~(n << 1) & (2**64 - 1)
    outb = bytearray()
    while u >= 0x80:
        outb.append(u & 0x7F | 0x80)
        u >>= 7
    outb.append(u)
    return bytes(outb)


def perf_key(prefix: bytes, n: int, size: int = KEY_SIZE) -> bytes:
    """The prefix, then a size-byte buffer holding n as a varint (the rest zero)."""
    v = varint(n)
    return prefix + v + bytes(size - len(v))


# --- the numbers ---------------------------------------------------------------------------------
@dataclass
class Stats:
    """etcd's report statistics over one run: latencies of the writes that succeeded, seconds."""

    rps: float
    slowest: float
    stddev: float
    average: float
    errors: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, latencies: list[float], errors: dict[str, int], total: float) -> Stats:
        n = len(latencies)
        rps = n / total if total > 0 else (math.nan if n == 0 else math.inf)
        if n == 0:  # Go's 0/0 is NaN, and so is the square root of it; the slowest stays 0
            return cls(rps, 0.0, math.nan, math.nan, dict(errors))
        avg = sum(latencies) / n
        var = sum((x - avg) ** 2 for x in latencies) / n
        return cls(rps, max(latencies), math.sqrt(var), avg, dict(errors))


def go_f(x: float) -> str:
    """Go's %f."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:f}"


def go_int(x: float) -> int:
    """Go's int(float64) on amd64: truncation; NaN and out-of-range give the minimum int."""
    if math.isnan(x) or math.isinf(x) or abs(x) >= 2**63:
        return -(2**63)
    return int(x)


def verdict(s: Stats, limit: int) -> tuple[list[str], bool]:
    """etcdctl's final lines for these numbers, and whether the check passed."""
    lines: list[str] = []
    ok = True
    if s.errors:
        lines.append("FAIL: too many errors")
        lines.extend(f"FAIL: ERROR({e}) -> {n}" for e, n in s.errors.items())
        ok = False
    writes = go_int(s.rps) + 1
    if not s.rps / limit > 0.9:  # NaN fails too, as Go's "<= 0.9" is false for NaN
        lines.append(f"FAIL: Throughput too low: {writes} writes/s")
        ok = False
    else:
        lines.append(f"PASS: Throughput is {writes} writes/s")
    if s.slowest > 0.5:
        lines.append(f"Slowest request took too long: {go_f(s.slowest)}s")
        ok = False
    else:
        lines.append(f"PASS: Slowest request took {go_f(s.slowest)}s")
    if s.stddev > 0.1:
        lines.append(f"Stddev too high: {go_f(s.stddev)}s")
        ok = False
    else:
        lines.append(f"PASS: Stddev is {go_f(s.stddev)}s")
    lines.append("PASS" if ok else "FAIL")
    return lines, ok


# --- the load ------------------------------------------------------------------------------------
class Limiter:
    """golang.org/x/time/rate with burst 1: a token every 1/rate seconds, at most one saved up;
    a wait that would end after the deadline is refused at once (and takes no token)."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = 1.0
        self.last = clock()

    def reserve(self, deadline: float) -> float | None:
        """Seconds to wait for the next token, or None when that would pass the deadline."""
        now = self.clock()
        tokens = min(1.0, self.tokens + max(now - self.last, 0.0) * self.rate)
        tokens -= 1.0
        wait = -tokens / self.rate if tokens < 0 else 0.0
        if now + wait > deadline:
            return None
        self.tokens, self.last = tokens, now
        return wait


@dataclass
class Outcome:
    latencies: list[float]
    errors: dict[str, int]
    total: float  # seconds from the start of the load to its last answer


Producer = Callable[["asyncio.Queue[pb.PutRequest | None]"], Awaitable[None]]


async def run_load(stubs: Sequence[tuple[Any, str]], produce: Producer, client: Client,
                   metadata: list[tuple[str, str]], clock: Callable[[], float] = time.monotonic,
                   on_result: Callable[[], None] = lambda: None) -> Outcome:
    """The workers (one per stub: a KV stub and its endpoint) sending what the producer queues
    (the queue holds one request per worker, as etcdctl's channel), until the producer is done."""
    queue: asyncio.Queue[pb.PutRequest | None] = asyncio.Queue(maxsize=len(stubs))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    begin = clock()

    async def worker(stub: Any, endpoint: str) -> None:
        put = stub.Put
        while (req := await queue.get()) is not None:
            start = clock()
            try:
                await put(req, metadata=metadata, wait_for_ready=True)
            except grpc.RpcError as exc:
                text = str(client.failure(exc, endpoint))
                errors[text] = errors.get(text, 0) + 1
            else:
                latencies.append(clock() - start)
            on_result()

    async def producer() -> None:
        await produce(queue)
        for _ in stubs:
            await queue.put(None)

    await asyncio.gather(producer(), *(worker(s, ep) for s, ep in stubs))
    return Outcome(latencies, errors, clock() - begin)


def rate_producer(load: PerfLoad, prefix: bytes, deadline: float, stop: asyncio.Event,
                  clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> Producer:
    """check perf's: puts at the load's rate until the deadline (or a stop)."""
    pick = rng or random.Random()
    value = bytes(VALUE_SIZE)

    async def produce(queue: asyncio.Queue[pb.PutRequest | None]) -> None:
        limiter = Limiter(load.limit, clock)
        while not stop.is_set():
            wait = limiter.reserve(deadline)
            if wait is None:
                break
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    break
                except TimeoutError:
                    pass
            await queue.put(pb.PutRequest(key=perf_key(prefix, pick.randrange(2**63 - 1)), value=value))

    return produce


def count_producer(count: int, prefix: bytes, key_size: int, value_size: int, stop: asyncio.Event,
                   rng: random.Random | None = None) -> Producer:
    """check datascale's: a fixed number of puts, as fast as they are taken."""
    pick = rng or random.Random()
    value = bytes(value_size)

    async def produce(queue: asyncio.Queue[pb.PutRequest | None]) -> None:
        for _ in range(count):
            if stop.is_set():
                break
            await queue.put(pb.PutRequest(key=perf_key(prefix, pick.randrange(2**63 - 1), key_size), value=value))

    return produce


def load_in_loop(client: Client, clients: int, producer_for: Callable[[asyncio.Event], Producer],
                 interrupted: threading.Event, on_result: Callable[[], None] = lambda: None) -> Outcome:
    """Run a load on an event loop of its own: one channel per client; a first Ctrl-C stops the
    producer (the queued writes still go out), a second one kills, as in etcdctl."""
    async def main() -> Outcome:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            interrupted.set()
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        eps = client.endpoints
        channels = [client.aio_channel(eps[i % len(eps)]) for i in range(clients)]
        try:
            from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc

            kv_stub: Any = rpc.KVStub
            stubs = [(kv_stub(ch), eps[i % len(eps)]) for i, ch in enumerate(channels)]
            return await run_load(stubs, producer_for(stop), client, client.metadata(), on_result=on_result)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await asyncio.gather(*(ch.close(None) for ch in channels))

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(main())


def cleanup(client: Client, prefix: bytes, compact: bool) -> None:
    """etcdctl's attemptCleanup: delete the prefix; a failure is reported, not fatal."""
    from petcd.ctl.kv import prefix_end

    req = pb.DeleteRangeRequest(key=prefix or b"\x00", range_end=prefix_end(prefix) if prefix else b"\x00")
    try:
        resp = client.unary("KV", "DeleteRange", req, timeout=CLEANUP_TIMEOUT)
    except RpcFailure as exc:
        out(f"FAIL: Cleanup failed during key deletion: ERROR({exc})\n")
        return
    if compact:
        compact_at(client, resp.header.revision)


def compact_at(client: Client, rev: int) -> None:
    out(f"Compacting with revision {rev}\n")
    try:
        client.unary("KV", "Compact", pb.CompactionRequest(revision=rev, physical=True), timeout=CLEANUP_TIMEOUT)
    except RpcFailure as exc:
        raise CtlExit(EXIT_ERROR, str(exc)) from None
    out(f"Compacted with revision {rev}\n")


def defrag_endpoint(client: Client, ep: str) -> None:
    from petcd.ctl.cli import go_quote

    out(f"Defragmenting {go_quote(ep)}\n")
    try:
        client.unary("Maintenance", "Defragment", pb.DefragmentRequest(), endpoint=ep, timeout=CLEANUP_TIMEOUT)
    except RpcFailure as exc:
        raise CtlExit(EXIT_ERROR, str(exc)) from None
    out(f"Defragmented {go_quote(ep)}\n")


def duration_of(env: Env, load: PerfLoad) -> int:
    if "duration" not in env.inv.changed:
        return load.duration
    secs = env.inv.seconds("duration")
    if secs < 1 or secs != int(secs):
        raise CtlExit(EXIT_BAD_ARGS, f"--duration must be a whole number of seconds, at least 1s (got {secs:g}s)")
    return int(secs)


def check_perf(env: Env) -> int:
    from petcd.ctl.base import to_bytes
    from petcd.ctl.kv import prefix_end

    load = load_for(env.inv.text("load"))
    duration = duration_of(env, load)
    prefix = to_bytes(env.inv.text("prefix"))
    with env.client() as client:
        deadline = time.monotonic() + duration
        probe = pb.RangeRequest(key=prefix or b"\x00", range_end=prefix_end(prefix) if prefix else b"\x00", limit=1)
        resp = client.unary("KV", "Range", probe, timeout=duration)
        if resp.kvs:
            p = env.inv.text("prefix")
            raise CtlExit(EXIT_INVALID_INPUT,
                          f"prefix \"{p}\" has keys. Delete with 'petcdctl del --prefix {p}' first")
        bar = Bar(duration).start()
        ticking = threading.Event()

        def tick() -> None:
            for _ in range(duration):
                if ticking.wait(1.0):
                    return
                bar.add(1)
            bar.finish()

        ticker = threading.Thread(target=tick, name="perf-seconds", daemon=True)
        ticker.start()
        interrupted = threading.Event()
        outcome = load_in_loop(client, load.clients, lambda stop: rate_producer(load, prefix, deadline, stop),
                               interrupted)
        if interrupted.is_set():
            ticking.set()
            bar.stop()
            cleanup(client, prefix, False)  # etcdctl's Ctrl-C handler cleans up at once
        else:
            ticker.join()
        cleanup(client, prefix, env.inv.bool("auto-compact"))
        if env.inv.bool("auto-defrag"):
            for ep in client.endpoints:
                defrag_endpoint(client, ep)
    lines, ok = verdict(Stats.of(outcome.latencies, outcome.errors, outcome.total), load.limit)
    out("".join(line + "\n" for line in lines))
    return 0 if ok else EXIT_ERROR


def perf_command() -> Command:
    return Command("perf [options]", "Check the performance of the etcd cluster", lambda inv: check_perf(Env(inv)),
                   flags=[
                       S("load", "s", "The performance check's workload model. Accepted workloads: "
                                      "s(small), m(medium), l(large), xl(xLarge)"),
                       S("prefix", DEFAULT_PREFIX, "The prefix for writing the performance check's keys."),
                       B("auto-compact", "Compact storage with last revision after test is finished."),
                       B("auto-defrag", "Defragment storage after test is finished."),
                       D("duration", 60.0, "[petcdctl] How long the load runs, in whole seconds "
                                           "(etcdctl always runs the load's 60s; shorter runs are smoke tests)"),
                   ])
