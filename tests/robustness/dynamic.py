"""A robustness run whose fault changes the cluster itself (members added, removed, replaced, or
one whose disk fills up), checked as ``suite.run`` checks the others.

The fault gets a :class:`Live`: the current members (it changes the list in place) and the
endpoints clients may use. The suite's clients (``Recorder``) keep the endpoints they started
with; the watchers and the probe read ``Live.endpoints`` at every reconnect / call, so they move to
members that join. A :class:`Probe` writes unique keys through every current endpoint and keeps
every error's code and text: each must be one etcd documents. After the fault, the same checks as
``suite.run``: linearizable history, no lost acknowledged write (in the event history of every
final member, and every acknowledged probe key on every final member), every watcher's events
complete and in order, equal HashKV of all final members at a common revision. A fault that
compacts the history keeps every member's events up to the compaction first (``Live.archived``),
and a write refused for space (NOSPACE) must not have taken effect.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Server, ServerGroup
from tests.robustness.defrag import DOCUMENTED
from tests.robustness.linearizability import Refused, check, save_history
from tests.robustness.suite import (
    RunConfig,
    RunResult,
    _revision,
    check_members_agree,
    check_writes,
    patch_history,
    refused_but_applied,
)
from tests.robustness.workload import PREFIX, Event, Recorder, Watcher, collect_events, now

PROBE_PREFIX = b"probe/"
ROUND = 2.0  # seconds of one round of clients
# etcd 3.5's texts (api/v3rpc/rpctypes) a client may see while members come, go or run out of disk
DOCUMENTED_TEXTS = (*DOCUMENTED, "etcdserver: server stopped", "etcdserver: mvcc: database space exceeded",
                    "etcdserver: unhealthy cluster", "etcdserver: not capable")
# codes a dead or unreachable member gives through gRPC's own transport (no etcd text)
TRANSPORT_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")


def undocumented(errors: Counter[str]) -> dict[str, int]:
    """Errors (``CODE: details``) that are neither etcd's documented texts nor gRPC transport
    failures of a member that is down (those carry no ``etcdserver:`` text)."""
    out = {}
    for e, n in errors.items():
        code, _, details = e.partition(": ")
        if details.startswith(DOCUMENTED_TEXTS):
            continue
        if code in TRANSPORT_CODES and not details.startswith("etcdserver:"):
            continue
        out[e] = n
    return out


@dataclass
class Live:
    members: list[Server]
    endpoints: list[str]
    rnd: random.Random
    election_timeout: float
    group: ServerGroup
    root: Path
    cfg: RunConfig
    log: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stats: dict[str, object] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run after the members stop
    # each endpoint's events on the watched prefix through revision ``archived_through``, kept by a
    # fault before it compacted them away (the final checks read the rest from the members)
    archived: dict[str, list[Event]] = field(default_factory=dict)
    archived_through: int = 0
    _t0: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self._t0:7.2f}s {what}")


Fault = Callable[[Live], Awaitable[None]]


@dataclass
class Probe:
    """Puts of unique keys (and linearizable reads back) through the current endpoints, each
    error kept with its text."""

    live: Live
    seed: int
    acked: dict[bytes, bytes] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)

    async def run(self, stop: asyncio.Event) -> None:
        rnd = random.Random(f"{self.seed}/probe")
        channels: dict[str, grpc.aio.Channel] = {}
        n = 0
        try:
            while not stop.is_set():
                ep = rnd.choice(self.live.endpoints)
                ch = channels.get(ep) or channels.setdefault(ep, grpc.aio.insecure_channel(ep))
                kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
                n += 1
                key, value = PROBE_PREFIX + b"%06d" % n, b"v%d" % n
                try:
                    await kv.Put(pb.PutRequest(key=key, value=value), timeout=2.0)
                    self.acked[key] = value
                    await kv.Range(pb.RangeRequest(key=key), timeout=2.0)
                except grpc.aio.AioRpcError as exc:
                    self.errors[f"{exc.code().name}: {exc.details()}"] += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.02)
        finally:
            for c in channels.values():
                await c.close(None)


END_MARK = PREFIX + b"end"


def _end_mark(endpoints: list[str], put: bool) -> None:
    """Put the end mark (before the load), or delete it (after): the deletion is the last event
    on the watched prefix. A delete, because a member refuses puts under a NOSPACE alarm (a
    quota scenario's clients may fill the quota again after its recovery) but never deletes."""
    end = now() + 30
    retried = False
    while True:
        try:
            with grpc.insecure_channel(endpoints[0]) as ch:
                kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
                if put:
                    kv.Put(pb.PutRequest(key=END_MARK, value=b"end"), timeout=5)
                    return
                # (after a failed attempt it may be gone already: that attempt took effect)
                if kv.DeleteRange(pb.DeleteRangeRequest(key=END_MARK), timeout=5).deleted == 1 or retried:
                    return
                raise AssertionError("the end mark was gone before the end of the run")
        except grpc.RpcError:
            if now() > end:
                raise
            retried = True
            time.sleep(0.2)


def _probe_keys(endpoint: str) -> dict[bytes, bytes]:
    with grpc.insecure_channel(endpoint) as ch:
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        rr = kv.Range(pb.RangeRequest(key=PROBE_PREFIX, range_end=PROBE_PREFIX[:-1] + b"0", serializable=True),
                      timeout=10)
        return {k.key: k.value for k in rr.kvs}


async def _events(live: Live, endpoint: str, start_rev: int, final_rev: int) -> list[Event]:
    """The endpoint's events on the prefix from ``start_rev`` through ``final_rev``: what the
    fault archived, then the rest from the member."""
    # (the archive's watch may have gone past archived_through: those come again from the member)
    early = [e for e in live.archived.get(endpoint, []) if start_rev <= e.revision <= live.archived_through]
    return early + await collect_events(endpoint, max(start_rev, live.archived_through + 1), final_rev)


async def run(root: Path, cfg: RunConfig, start: Callable[[Live], list[Server]], fault: Fault,
              fault_at: tuple[float, float] = (1.0, 2.0), value_bytes: int = 0,
              nospace_may_apply: bool = False, pause: float = 0.0) -> RunResult:
    """``start`` starts the cluster (every member ready on return); ``fault`` runs ``fault_at``
    seconds (uniform) into the load and must leave every member of ``live.members`` running.
    ``value_bytes``: the clients' values are padded up to that many bytes; ``pause``: seconds each
    client waits after an answered op. A write refused for
    space that took effect all the same is a problem unless ``nospace_may_apply`` (etcd, see
    ``suite.refused_but_applied``)."""
    root.mkdir(parents=True, exist_ok=True)
    result = RunResult(cfg, root / "history.json")
    rnd = random.Random(cfg.seed)
    group = ServerGroup(root)
    live = Live([], [], rnd, cfg.election_ms / 1000, group, root, cfg)
    recorder: Recorder | None = None
    started = time.monotonic()
    try:
        live.members[:] = await asyncio.to_thread(start, live)
        live.endpoints[:] = [m.endpoint for m in live.members]
        await asyncio.to_thread(_end_mark, live.endpoints, True)
        start_rev = await asyncio.to_thread(_revision, live.endpoints[0]) + 1
        keys = [PREFIX + f"k{i}".encode() for i in range(cfg.keys)]
        recorder = Recorder(list(live.endpoints), keys, cfg.seed, value_bytes=value_bytes)
        probe = Probe(live, cfg.seed)
        stop = asyncio.Event()
        watchers = [Watcher(live.endpoints, start_rev, i) for i in range(len(live.endpoints))]
        watch_tasks = [asyncio.ensure_future(w.run(stop)) for w in watchers]

        async def timed_fault() -> None:
            await asyncio.sleep(rnd.uniform(*fault_at))
            await fault(live)
            live.note("fault done")

        # the load lasts the configured time, or until the fault is done, whichever is later: the
        # clients run in rounds of ROUND seconds (fresh client ids, so every value stays unique),
        # each round on the endpoints of the members there are then
        fault_task = asyncio.ensure_future(timed_fault())
        load_end = now() + cfg.duration
        probe_stop = asyncio.Event()
        probe_task = asyncio.ensure_future(probe.run(probe_stop))
        rounds = 0
        while now() < load_end or not fault_task.done():
            recorder.endpoints = list(live.endpoints)
            until = now() + ROUND
            await asyncio.gather(*(recorder.client(rounds * cfg.clients + c, until, pause)
                                   for c in range(cfg.clients)))
            rounds += 1
        probe_stop.set()
        await asyncio.gather(fault_task, probe_task)
        # a last event on the watched prefix, after every write of the run (the probe's are
        # outside it): the final reads' revision is then that of an event every watcher must get
        await asyncio.to_thread(_end_mark, live.endpoints, False)
        # settle the history with reads through the final members only
        recorder.endpoints = list(live.endpoints)
        await recorder.final_reads(rounds * cfg.clients, now() + 30)
        final_rev = max(op.revision() or 0 for op in recorder.ops[-len(keys):])
        final = [m.endpoint for m in live.members]
        truths = [await _events(live, ep, start_rev, final_rev) for ep in final]
        truth = [e for e in truths[0] if e.revision <= final_rev]
        end = now() + 20
        while any(w.next_revision <= (truth[-1].revision if truth else 0) for w in watchers) and now() < end:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*watch_tasks)

        patched = patch_history(recorder.ops, truth)
        save_history(root / "history.json", patched, {"seed": cfg.seed, "scenario": cfg.scenario})
        v = check(patched)
        if not v.ok:
            result.problems.append(f"history: {v.message}")
        result.problems += check_writes(recorder.ops, truth)
        applied = refused_but_applied(recorder.ops, truth)
        if applied and not nospace_may_apply:
            result.problems.append(f"{len(applied)} writes refused with NOSPACE took effect, e.g. {applied[0].input!r}")
        result.problems += await check_members_agree(live.members, truths, truth, watchers, final_rev)
        for m in live.members:
            held = await asyncio.to_thread(_probe_keys, m.endpoint)
            lost = [k for k, v in probe.acked.items() if held.get(k) != v]
            if lost:
                result.problems.append(f"{m.name} lacks {len(lost)} acknowledged probe writes, e.g. {lost[:3]}")
        errors = Counter(probe.errors)
        bad = undocumented(errors)
        if bad:
            result.problems.append(f"errors etcd does not document: {bad}")
        # the recorder keeps codes only (the probe's texts are judged above): besides the transport
        # codes, etcd's documented errors here are RESOURCE_EXHAUSTED (NOSPACE, too many requests)
        odd_codes = {c: n for c, n in recorder.errors.items()
                     if c not in (*TRANSPORT_CODES, "timeout", "RESOURCE_EXHAUSTED")}
        if odd_codes:
            result.problems.append(f"clients got error codes etcd does not give here: {odd_codes}")
        result.problems += live.problems
        result.stats.update(live.stats)
        result.stats.update(ops=len(recorder.ops), unknown=sum(1 for op in recorder.ops if op.output is None),
                            refused=sum(1 for op in recorder.ops if isinstance(op.output, Refused)),
                            refused_but_applied=len(applied),
                            final_revision=final_rev, events=len(truth),
                            reconnects=sum(w.reconnects for w in watchers), errors=dict(recorder.errors),
                            probe_acked=len(probe.acked), probe_errors=dict(errors),
                            members=[m.name for m in live.members])
    except Exception as exc:  # the run itself broke: a failure with the seed, like any other
        result.problems.append(f"run failed: {type(exc).__name__}: {exc}")
        result.problems += live.problems
        for m in group.servers:
            if not m.is_running():
                result.problems.append(f"{m.name} is down; its log ends:\n{m.log_tail(15)}")
    finally:
        result.stats["seconds"] = round(time.monotonic() - started, 1)
        await asyncio.to_thread(group.close)
        for cleanup in live.cleanups:
            cleanup()
        raw = recorder.ops if recorder else []
        if not result.history_path.exists():
            save_history(result.history_path, raw, {"seed": cfg.seed, "scenario": cfg.scenario})
        save_history(root / "history-raw.json", raw, {
            "seed": cfg.seed, "scenario": cfg.scenario, "duration": cfg.duration, "clients": cfg.clients,
            "keys": cfg.keys, "faults": live.log, "problems": result.problems, "stats": dict(result.stats),
        })
    return result
