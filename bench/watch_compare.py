"""Side-by-side Watch and Lease benchmark: petcd against real etcd, same machine, same run.

Not a test. For every server kind (``--kinds``, default etcd then petcd), on a fresh server:

1. Baseline: ``--puts`` puts under a prefix with nobody watching (the writer's rate on its own).
2. Watch fan-out, once per layout in ``--layouts`` (``SxW`` = S watch streams with W watchers each;
   ``SxW@C`` spreads the streams over C gRPC connections, default one connection per stream). All
   watchers watch the same prefix from the same start revision. They are opened by ``--procs``
   client processes (grpc.aio), and once every watcher is created one writer in this process puts
   ``--puts`` keys under the prefix with ``--inflight`` puts in flight. Measured: events delivered
   per second across all watchers (S*W*puts events, from the first put to the last event received)
   and the write rate while watched. Every watcher must receive every revision exactly once and in
   order: each event's mod_revision must be the one after the previous event's, it must be a PUT of
   a key under the prefix, and the last one must be the last put's revision.
3. Keep-alives: ``--leases`` leases with a ``--ttl`` TTL, ``--ka-streams`` LeaseKeepAlive streams
   (spread over the client processes, one connection each), each sending keep-alive requests back
   to back (``--ka-window`` unanswered at most) over its share of the leases for ``--ka-seconds``.
   Measured: keep-alive responses per second. Every response must name the lease of the request
   it answers (in order) and carry the granted TTL.

The server's CPU time (utime + stime from /proc/<pid>/stat) is recorded per phase, as CPU per event
or per keep-alive moves much less than throughput on a shared machine. The clients' CPU time is
recorded too: the machine has 2 cores and the clients are Python, so a figure whose clients used
most of a core each is client-bound. Load average is taken around every phase.

    python bench/watch_compare.py [--layouts 100x10,1000x1] [--puts 2000] [--kinds etcd,petcd]
                                  [--leases 100] [--ka-streams 10] [--ka-seconds 10] [--json out.json]

Servers are stopped by their own PID (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/watch_compare.py` puts bench/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

from bench.kv_compare import (  # noqa: E402
    fmt_num,
    load1,
    loadavg,
    parse_kinds,
    prefix_end,
    proc_cpu_seconds,
    proc_status_kib,
    ratio,
    run_header,
    run_meta,
)
from petcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from petcd.proto.mvccpb import kv_pb2  # noqa: E402
from tests.harness.procs import Server  # noqa: E402

PREFIX = b"bench/watch/"
BASE_PREFIX = b"bench/base/"
KEY_FMT = b"%06d"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    # without this, channels to the same target with the same arguments share one connection
    ("grpc.use_local_subchannel_pool", 1),
]


# --- client processes -------------------------------------------------------------------------------
@dataclass
class WatchJob:
    endpoint: str
    streams: int  # streams this process opens
    watchers_per_stream: int
    conns: int  # connections this process opens; streams are spread over them round robin
    start_rev: int
    puts: int
    timeout: float


def _watch_client(job: WatchJob, conn: Connection) -> None:
    try:
        conn.send(("done", asyncio.run(_watch_main(job, conn))))
    except BaseException as exc:  # report it to the parent rather than leave it waiting
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _watch_main(job: WatchJob, conn: Connection) -> dict[str, Any]:
    end = prefix_end(PREFIX)
    last_rev = job.start_rev + job.puts - 1
    put_type = kv_pb2.Event.PUT
    channels = [grpc.aio.insecure_channel(job.endpoint, options=CHANNEL_OPTIONS) for _ in range(job.conns)]
    st: dict[str, Any] = {
        "watchers": 0, "complete": 0, "events": 0, "responses": 0, "bad": 0, "canceled": 0,
        "first_bad": "", "first_event_t": None, "last_event_t": None, "short": [],
    }
    created = 0
    all_created = asyncio.Event()
    total_watchers = job.streams * job.watchers_per_stream

    async def stream(i: int) -> None:
        nonlocal created
        call = rpc_pb2_grpc.WatchStub(channels[i % job.conns]).Watch()
        try:
            for _ in range(job.watchers_per_stream):
                await call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                    key=PREFIX, range_end=end, start_revision=job.start_rev)))
            nxt: dict[int, int] = {}
            count: dict[int, int] = {}
            while len(nxt) < job.watchers_per_stream:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise RuntimeError("watch stream ended before its watchers were created")
                if not resp.created:
                    raise RuntimeError(f"expected a created response, got {resp}")
                nxt[resp.watch_id] = job.start_rev
                count[resp.watch_id] = 0
            created += job.watchers_per_stream
            st["watchers"] += job.watchers_per_stream
            if created == total_watchers:
                all_created.set()
            open_watchers = job.watchers_per_stream
            while open_watchers:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    break
                st["responses"] += 1
                wid = resp.watch_id
                if resp.canceled:
                    st["canceled"] += 1
                    if not st["first_bad"]:
                        st["first_bad"] = f"watcher {wid} canceled: {resp.cancel_reason!r}"
                    open_watchers -= 1
                    continue
                evs = resp.events
                if not evs:
                    continue  # a progress notification
                if st["first_event_t"] is None:
                    st["first_event_t"] = time.monotonic()
                exp = nxt[wid]
                for ev in evs:
                    kv = ev.kv
                    if kv.mod_revision != exp or ev.type != put_type or not kv.key.startswith(PREFIX):
                        st["bad"] += 1
                        if not st["first_bad"]:
                            st["first_bad"] = (f"watcher {wid}: expected rev {exp}, got type {ev.type} "
                                               f"key {kv.key!r} rev {kv.mod_revision}")
                    exp = kv.mod_revision + 1
                nxt[wid] = exp
                count[wid] += len(evs)
                st["events"] += len(evs)
                if exp > last_rev:
                    open_watchers -= 1
                    if count[wid] == job.puts and exp == last_rev + 1:
                        st["complete"] += 1
                    st["last_event_t"] = time.monotonic()
        finally:
            call.cancel()
            if "nxt" in locals():
                short = [f"{w}:{count[w]}" for w in nxt if count[w] != job.puts]
                st["short"].extend(short[:5])

    tasks = [asyncio.create_task(stream(i)) for i in range(job.streams)]
    t_create = time.monotonic()
    created_wait = asyncio.create_task(all_created.wait())
    done, _ = await asyncio.wait([created_wait, *tasks], timeout=job.timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not created_wait and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    if not all_created.is_set():
        raise RuntimeError(f"only {created} of {total_watchers} watchers created in {job.timeout:.0f}s")
    conn.send(("ready", time.monotonic() - t_create))
    cpu0 = time.process_time()
    _, pending = await asyncio.wait(tasks, timeout=job.timeout)
    st["timed_out"] = len(pending)
    for t in pending:
        t.cancel()
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            st["first_bad"] = st["first_bad"] or f"stream failed: {t.exception()!r}"
    await asyncio.gather(*pending, return_exceptions=True)
    st["cpu_s"] = time.process_time() - cpu0
    st["short"] = st["short"][:5]
    for c in channels:
        await c.close()
    return st


@dataclass
class KeepAliveJob:
    endpoint: str
    leases: list[int]
    streams: int
    window: int
    ttl: int
    seconds: float


def _ka_client(job: KeepAliveJob, conn: Connection) -> None:
    try:
        conn.send(("done", asyncio.run(_ka_main(job, conn))))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _ka_main(job: KeepAliveJob, conn: Connection) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(job.endpoint, options=CHANNEL_OPTIONS) for _ in range(job.streams)]
    calls = [rpc_pb2_grpc.LeaseStub(c).LeaseKeepAlive() for c in channels]
    share = [job.leases[i::job.streams] or job.leases for i in range(job.streams)]
    st = {"responses": 0, "bad": 0, "first_bad": ""}
    # one round trip per stream first, so connection setup is not measured
    for call, ids in zip(calls, share, strict=True):
        await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=ids[0]))
        r = await call.read()
        if r is grpc.aio.EOF or r.ID != ids[0] or r.TTL != job.ttl:
            raise RuntimeError(f"warm-up keep-alive of {ids[0]:x} answered {r}")
    conn.send(("ready", 0.0))
    start_at = conn.recv()  # a monotonic time shared by all client processes
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    cpu0 = time.process_time()
    deadline = start_at + job.seconds

    async def run(call: Any, ids: list[int]) -> None:
        sent: list[int] = []  # FIFO of unanswered lease ids: a stream answers in order
        head = 0
        i = 0
        while True:
            while time.monotonic() < deadline and len(sent) - head < job.window:
                lid = ids[i % len(ids)]
                i += 1
                sent.append(lid)
                await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lid))
            if head == len(sent):
                return
            r = await call.read()
            if r is grpc.aio.EOF:
                raise RuntimeError("keep-alive stream ended")
            want = sent[head]
            head += 1
            if time.monotonic() <= deadline:
                st["responses"] += 1
            if r.ID != want or r.TTL != job.ttl:
                st["bad"] += 1
                if not st["first_bad"]:
                    st["first_bad"] = f"lease {want:x}: answered ID {r.ID:x} TTL {r.TTL} (granted {job.ttl})"

    await asyncio.gather(*(run(c, ids) for c, ids in zip(calls, share, strict=True)))
    st["cpu_s"] = time.process_time() - cpu0
    for call in calls:
        await call.done_writing()
    for c in channels:
        await c.close()
    return st


def run_clients(target: Callable[..., None], jobs: Sequence[Any], *, on_ready: Callable[[], Any],
                timeout: float) -> tuple[list[dict[str, Any]], list[float]]:
    """Start one spawned process per job, call ``on_ready`` once all say ready, send them its result
    (if not None), and collect their results."""
    ctx = mp.get_context("spawn")  # fork after grpc has started threads in this process is unsafe
    procs, pipes = [], []
    for job in jobs:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=target, args=(job, child), daemon=True)
        p.start()
        child.close()
        procs.append(p)
        pipes.append(parent)
    try:
        ready: list[float] = []
        for pipe in pipes:
            if not pipe.poll(timeout):
                raise RuntimeError(f"client process not ready after {timeout:.0f}s")
            tag, val = pipe.recv()
            if tag == "error":
                raise RuntimeError(f"client process failed: {val}")
            ready.append(val)
        msg = on_ready()
        if msg is not None:
            for pipe in pipes:
                pipe.send(msg)
        results = []
        for pipe in pipes:
            if not pipe.poll(timeout):
                raise RuntimeError(f"client process gave no result within {timeout:.0f}s")
            tag, val = pipe.recv()
            if tag == "error":
                raise RuntimeError(f"client process failed: {val}")
            results.append(val)
        return results, ready
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()  # our own child, by its handle
                p.join()


# --- phases -----------------------------------------------------------------------------------------
@dataclass
class Phase:
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    loadavg_before: str = ""
    loadavg_after: str = ""


@dataclass
class WriteResult(Phase):
    puts: int = 0
    errors: int = 0
    first_error: str = ""
    start_t: float = 0.0  # time.monotonic() at the first put

    @property
    def rate(self) -> float:
        return self.puts / self.seconds if self.seconds else 0.0


@dataclass
class WatchResult(Phase):
    layout: str = ""
    watchers: int = 0
    streams: int = 0
    conns: int = 0
    create_s: float = 0.0
    events: int = 0
    expected_events: int = 0
    responses: int = 0
    complete_watchers: int = 0
    bad_events: int = 0
    canceled: int = 0
    timed_out_streams: int = 0
    first_bad: str = ""
    short: list[str] = field(default_factory=list)
    write: WriteResult = field(default_factory=WriteResult)
    rss_kib: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return (not self.error and self.complete_watchers == self.watchers and self.bad_events == 0
                and self.events == self.expected_events)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class KeepAliveResult(Phase):
    leases: int = 0
    streams: int = 0
    responses: int = 0
    bad: int = 0
    first_bad: str = ""
    error: str = ""

    @property
    def rate(self) -> float:
        return self.responses / self.seconds if self.seconds else 0.0


@dataclass
class KindResult:
    kind: str
    baseline: WriteResult = field(default_factory=WriteResult)
    watch: list[WatchResult] = field(default_factory=list)
    keepalive: KeepAliveResult = field(default_factory=KeepAliveResult)
    idle_rss_kib: int | None = None
    hwm_kib: int | None = None


async def put_keys(endpoint: str, prefix: bytes, n: int, inflight: int, value: bytes) -> WriteResult:
    res = WriteResult()
    async with grpc.aio.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 10)
        nxt = 0

        async def worker() -> None:
            nonlocal nxt
            while nxt < n and res.errors < 20:
                i = nxt
                nxt += 1
                try:
                    await kv.Put(rpc_pb2.PutRequest(key=prefix + KEY_FMT % i, value=value), timeout=60)
                    res.puts += 1
                except grpc.aio.AioRpcError as exc:
                    res.errors += 1
                    res.first_error = res.first_error or str(exc)[:300]

        c0 = time.process_time()
        res.start_t = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        res.seconds = time.monotonic() - res.start_t
        res.client_cpu_s = time.process_time() - c0
    return res


def current_rev(endpoint: str) -> int:
    async def go() -> int:
        async with grpc.aio.insecure_channel(endpoint) as channel:
            r = await rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"\0", limit=1), timeout=30)
            return int(r.header.revision)
    return asyncio.run(go())


def baseline_phase(server: Server, args: argparse.Namespace) -> WriteResult:
    assert server.pid is not None
    la0, cpu0 = loadavg(), proc_cpu_seconds(server.pid)
    res = asyncio.run(put_keys(server.endpoint, BASE_PREFIX, args.puts, args.inflight, b"v" * args.value_size))
    res.server_cpu_s = proc_cpu_seconds(server.pid) - cpu0
    res.loadavg_before, res.loadavg_after = la0, loadavg()
    return res


def parse_layout(spec: str) -> tuple[int, int, int]:
    shape, _, conns = spec.partition("@")
    s, w = (int(x) for x in shape.split("x"))
    return s, w, int(conns) if conns else s


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def watch_phase(server: Server, layout: str, args: argparse.Namespace) -> WatchResult:
    assert server.pid is not None
    pid = server.pid
    streams, per_stream, conns = parse_layout(layout)
    res = WatchResult(layout=layout, streams=streams, conns=conns, watchers=streams * per_stream,
                      expected_events=streams * per_stream * args.puts)
    # the prefix is cleared between layouts, so each one starts from an empty range
    start_rev = current_rev(server.endpoint) + 1
    nprocs = min(args.procs, streams)
    jobs = [WatchJob(server.endpoint, s, per_stream, max(1, c), start_rev, args.puts, args.watch_timeout)
            for s, c in zip(split(streams, nprocs), split(conns, nprocs), strict=True)]
    marks: dict[str, Any] = {}

    def on_ready() -> None:
        marks["la0"] = loadavg()
        marks["cpu0"] = proc_cpu_seconds(pid)
        res.write = asyncio.run(put_keys(server.endpoint, PREFIX, args.puts, args.inflight,
                                         b"v" * args.value_size))

    try:
        results, ready = run_clients(_watch_client, jobs, on_ready=on_ready, timeout=args.watch_timeout + 30)
    except RuntimeError as exc:
        res.error = str(exc)
        return res
    res.server_cpu_s = proc_cpu_seconds(pid) - marks["cpu0"]
    res.loadavg_before, res.loadavg_after = marks["la0"], loadavg()
    res.rss_kib = proc_status_kib(pid, "VmRSS")
    res.create_s = max(ready)
    for r in results:
        res.events += r["events"]
        res.responses += r["responses"]
        res.complete_watchers += r["complete"]
        res.bad_events += r["bad"]
        res.canceled += r["canceled"]
        res.timed_out_streams += r["timed_out"]
        res.client_cpu_s += r["cpu_s"]
        res.first_bad = res.first_bad or r["first_bad"]
        res.short.extend(r["short"])
    last = [r["last_event_t"] for r in results if r["last_event_t"] is not None]
    end_t = max(last) if last and res.ok else time.monotonic()
    res.seconds = end_t - res.write.start_t
    res.client_cpu_s += res.write.client_cpu_s
    # leave an empty range (one revision) for the next layout
    async def clear() -> None:
        async with grpc.aio.insecure_channel(server.endpoint) as channel:
            await rpc_pb2_grpc.KVStub(channel).DeleteRange(
                rpc_pb2.DeleteRangeRequest(key=PREFIX, range_end=prefix_end(PREFIX)), timeout=60)
    asyncio.run(clear())
    return res


def keepalive_phase(server: Server, args: argparse.Namespace) -> KeepAliveResult:
    assert server.pid is not None
    pid = server.pid
    res = KeepAliveResult(leases=args.leases, streams=args.ka_streams)

    async def grant() -> list[int]:
        async with grpc.aio.insecure_channel(server.endpoint) as channel:
            stub = rpc_pb2_grpc.LeaseStub(channel)
            ids = []
            for _ in range(args.leases):
                r = await stub.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=args.ttl), timeout=30)
                if r.TTL != args.ttl:
                    raise RuntimeError(f"LeaseGrant TTL={args.ttl} answered TTL {r.TTL}")
                ids.append(int(r.ID))
            return ids

    ids = asyncio.run(grant())
    nprocs = min(args.procs, args.ka_streams)
    jobs = [KeepAliveJob(server.endpoint, ids[i::nprocs], k, args.ka_window, args.ttl, args.ka_seconds)
            for i, k in enumerate(split(args.ka_streams, nprocs))]
    marks: dict[str, Any] = {}

    def on_ready() -> float:
        start_at = time.monotonic() + 0.5
        marks["la0"] = loadavg()
        marks["cpu0"] = proc_cpu_seconds(pid)
        marks["start_at"] = start_at
        return start_at

    try:
        results, _ = run_clients(_ka_client, jobs, on_ready=on_ready, timeout=args.ka_seconds + 60)
    except RuntimeError as exc:
        res.error = str(exc)
        return res
    # the server CPU window includes the 0.5 s start delay and the drain of the last window
    res.server_cpu_s = proc_cpu_seconds(pid) - marks["cpu0"]
    res.loadavg_before, res.loadavg_after = marks["la0"], loadavg()
    res.seconds = args.ka_seconds
    for r in results:
        res.responses += r["responses"]
        res.bad += r["bad"]
        res.client_cpu_s += r["cpu_s"]
        res.first_bad = res.first_bad or r["first_bad"]
    return res


# --- report -----------------------------------------------------------------------------------------
def render(kinds: Sequence[str], results: dict[str, KindResult], meta: dict[str, str], procs: int) -> str:
    lines: list[str] = []
    cols = list(kinds)
    has_ratio = "etcd" in kinds and "petcd" in kinds
    lines += ["| figure | " + " | ".join(cols) + (" | petcd/etcd |" if has_ratio else " |"),
              "|" + "---|" * (len(cols) + 1 + int(has_ratio))]

    def row(name: str, values: dict[str, float | None], digits: int = 0, show_ratio: bool = True) -> None:
        cells = [fmt_num(values.get(k), digits) for k in cols]
        r = ratio(values.get("petcd"), values.get("etcd")) if show_ratio else ""
        lines.append(f"| {name} | " + " | ".join(cells) + (f" | {r} |" if has_ratio else " |"))

    def text_row(name: str, values: dict[str, str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values.get(k, "") for k in cols) + (" | |" if has_ratio else " |"))

    rs = {k: results[k] for k in cols if k in results}
    if not rs:
        return "no results\n"
    any_r = next(iter(rs.values()))
    n = any_r.baseline.puts or 0
    row("put, nobody watching: writes/s", {k: r.baseline.rate or None for k, r in rs.items()})
    row("put, nobody watching: server CPU ms per 1000 puts",
        {k: r.baseline.server_cpu_s * 1e6 / r.baseline.puts if r.baseline.puts else None for k, r in rs.items()})
    layouts = [w.layout for w in any_r.watch]
    for i in range(len(layouts)):
        ws = {k: r.watch[i] for k, r in rs.items() if i < len(r.watch)}
        w0 = next(iter(ws.values()))
        label = f"watch {w0.watchers:,} watchers = {w0.streams} streams x {w0.watchers // w0.streams}" + (
            f" on {w0.conns} connections" if w0.conns != w0.streams else "")
        text_row(f"{label}: every watcher got every event once, in order",
                 {k: verdict(w) for k, w in ws.items()})
        row(f"{label}: events delivered/s", {k: w.rate if w.ok else None for k, w in ws.items()})
        row(f"{label}: first put to last event (s)", {k: w.seconds if w.ok else None for k, w in ws.items()}, 1)
        row(f"{label}: last event after last put answered (s)",
            {k: w.seconds - w.write.seconds if w.ok else None for k, w in ws.items()}, 2)
        row(f"{label}: writes/s while watched", {k: w.write.rate or None for k, w in ws.items()})
        row(f"{label}: events per WatchResponse", {k: w.events / w.responses if w.responses else None
                                                    for k, w in ws.items()}, 1)
        row(f"{label}: server CPU s", {k: w.server_cpu_s for k, w in ws.items()}, 1)
        row(f"{label}: server CPU µs per event delivered",
            {k: w.server_cpu_s * 1e6 / w.events if w.events else None for k, w in ws.items()}, 2)
        row(f"{label}: client CPU, cores (of {procs} client processes + writer)",
            {k: w.client_cpu_s / w.seconds if w.seconds else None for k, w in ws.items()}, 2, show_ratio=False)
        row(f"{label}: time to create the watchers (s)", {k: w.create_s for k, w in ws.items()}, 2)
        row(f"{label}: server RSS after (MiB)", {k: w.rss_kib / 1024 if w.rss_kib else None
                                                 for k, w in ws.items()}, 1)
    ka = {k: r.keepalive for k, r in rs.items()}
    k0 = next(iter(ka.values()))
    kl = f"keep-alive {k0.leases} leases, {k0.streams} streams"
    text_row(f"{kl}: every answer has its lease's ID and TTL",
             {k: ("ERROR: " + a.error) if a.error else ("yes" if a.bad == 0 and a.responses
                                                         else f"NO: {a.bad} bad; {a.first_bad}")
              for k, a in ka.items()})
    row(f"{kl}: keep-alives/s", {k: a.rate or None for k, a in ka.items()})
    row(f"{kl}: server CPU µs per keep-alive",
        {k: a.server_cpu_s * 1e6 / a.responses if a.responses else None for k, a in ka.items()}, 1)
    row(f"{kl}: client CPU, cores", {k: a.client_cpu_s / a.seconds if a.seconds else None
                                      for k, a in ka.items()}, 2, show_ratio=False)
    row("server RSS idle, fresh (MiB)", {k: r.idle_rss_kib / 1024 if r.idle_rss_kib else None
                                         for k, r in rs.items()}, 1)
    row("server peak RSS, VmHWM (MiB)", {k: r.hwm_kib / 1024 if r.hwm_kib else None for k, r in rs.items()}, 1)
    for k, r in rs.items():
        for w in r.watch:
            if not w.ok:
                lines += ["", f"{k} {w.layout}: {w.events:,} of {w.expected_events:,} events, "
                          f"{w.complete_watchers} of {w.watchers} watchers complete, {w.bad_events} out of order, "
                          f"{w.canceled} canceled, {w.timed_out_streams} streams timed out; first problem: "
                          f"{w.first_bad or w.error}; short watchers (id:count): {', '.join(w.short)}"]
        if r.baseline.errors:
            lines += ["", f"{k}: {r.baseline.errors} put errors, first: {r.baseline.first_error}"]
    lines += ["", "Load average (1, 5, 15 min) around each measurement:", "",
              "| measurement | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]

    def la(p: Phase) -> str:
        return f"{p.loadavg_before} → {p.loadavg_after}" if p.loadavg_before else ""

    lines.append(f"| put {n:,}, nobody watching | " + " | ".join(la(rs[k].baseline) if k in rs else ""
                                                               for k in cols) + " |")
    for i, layout in enumerate(layouts):
        lines.append(f"| watch {layout} | " + " | ".join(
            la(rs[k].watch[i]) if k in rs and i < len(rs[k].watch) else "" for k in cols) + " |")
    lines.append("| keep-alive | " + " | ".join(la(rs[k].keepalive) if k in rs else "" for k in cols) + " |")
    return "\n".join(run_header(meta) + lines) + "\n"


def verdict(w: WatchResult) -> str:
    if w.error:
        return "ERROR: " + w.error
    if w.ok:
        return f"yes ({w.events:,} events)"
    return f"NO ({w.events:,} of {w.expected_events:,} events, {w.bad_events} out of order)"


# --- main -------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="etcd,petcd", help="servers to run, comma separated")
    ap.add_argument("--layouts", default="100x10,1000x1",
                    help="watch layouts, comma separated: SxW[@C] = S streams of W watchers on C connections")
    ap.add_argument("--puts", type=int, default=2000, help="keys the writer puts under the watched prefix")
    ap.add_argument("--inflight", type=int, default=4, help="puts in flight")
    ap.add_argument("--value-size", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2, help="client processes (the machine has 2 cores)")
    ap.add_argument("--watch-timeout", type=float, default=300.0, help="give up on a watch layout after this")
    ap.add_argument("--leases", type=int, default=100)
    ap.add_argument("--ttl", type=int, default=600, help="granted TTL (long, so nothing expires)")
    ap.add_argument("--ka-streams", type=int, default=10, help="LeaseKeepAlive streams, one connection each")
    ap.add_argument("--ka-window", type=int, default=8, help="unanswered keep-alives per stream at most")
    ap.add_argument("--ka-seconds", type=float, default=10.0)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and server logs")
    args = ap.parse_args(argv)

    kinds = parse_kinds(ap, args.kinds)
    layouts = [x for x in args.layouts.split(",") if x]
    for spec in layouts:
        try:
            parse_layout(spec)
        except ValueError:
            ap.error(f"--layouts: bad layout {spec!r} (expected SxW or SxW@C)")
    root = Path(tempfile.mkdtemp(prefix="petcd-watchbench-"))
    meta = run_meta("bench/watch_compare.py", argv)
    start_load = load1()
    results: dict[str, KindResult] = {}
    servers: list[Server] = []
    try:
        for k in kinds:
            s = Server(k, root / k, label=f"watch-{k}")
            servers.append(s)
            s.start()
            assert s.pid is not None
            r = results[k] = KindResult(kind=k, idle_rss_kib=proc_status_kib(s.pid, "VmRSS"))
            log(f"{k}: {args.puts} puts, nobody watching ...")
            r.baseline = baseline_phase(s, args)
            log(f"    {r.baseline.rate:,.0f} writes/s")
            for layout in layouts:
                log(f"{k}: watch {layout} ...")
                w = watch_phase(s, layout, args)
                r.watch.append(w)
                log(f"    {verdict(w)}; {w.rate:,.0f} events/s, {w.write.rate:,.0f} writes/s, "
                    f"server CPU {w.server_cpu_s:.1f}s, client CPU {w.client_cpu_s:.1f}s in {w.seconds:.1f}s")
            log(f"{k}: keep-alive ...")
            r.keepalive = keepalive_phase(s, args)
            a = r.keepalive
            log(f"    {a.rate:,.0f} keep-alives/s, {a.bad} bad {a.error}")
            r.hwm_kib = proc_status_kib(s.pid, "VmHWM")
            s.stop()
    finally:
        for s in servers:
            s.stop()
        meta["loadavg_end"] = loadavg()
        meta["shared"] = "yes" if max(start_load, load1()) > 1.0 else "no"
        print(render(kinds, results, meta, args.procs))
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "results": {k: asdict(r) for k, r in results.items()}},
                                            indent=2))
        if args.keep:
            print(f"data dirs and logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
