"""One robustness run: a 3-member petcd cluster, concurrent clients and watchers, one fault, and
the checks afterwards.

Checks, each a list of problems (empty when it holds):
- the recorded history is linearizable, and its revisions never go backwards
  (``tests.robustness.linearizability``);
- no acknowledged write is lost: every member's event history holds each acknowledged write at
  the revision the client was told, and the members' histories are the same;
- every watcher got every event once, in order (after reconnecting where its stream broke);
- every member's HashKV at the final revision is the same;
- a lease kept alive (through random members, so mostly forwarded) with no gap near its TTL is
  never found gone, nor its key.

The history as checked (unknown outcomes settled from the event history, see ``patch_history``)
is saved to ``<run dir>/history.json``, and the raw one with the fault log and the problems to
``history-raw.json``, whatever the outcome, so a failing seed can be checked again (``python -m tests.robustness.linearizability``)
or rerun (``python -m tests.robustness --seed S --scenario NAME``).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import LOOPBACK, Server, ServerGroup, free_ports
from tests.robustness.faults import NEEDS_PROXIES, SCENARIOS, Faults
from tests.robustness.linearizability import (
    Delete,
    LeaseRevoke,
    Op,
    Output,
    Put,
    PutOk,
    Refused,
    TxnOk,
    check,
    save_history,
)
from tests.robustness.proxy import PeerProxies, PeerProxy
from tests.robustness.workload import PREFIX, Event, LeaseKeeper, Recorder, Watcher, collect_events, now

HEARTBEAT_MS = 100
ELECTION_MS = 1000


class ProxiedServer(Server):
    """A member that listens for peers on its own port but advertises its proxy's."""

    def __init__(self, *args: object, advertise_port: int, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.advertise_port = advertise_port

    def command(self) -> list[str]:
        adv = f"--initial-advertise-peer-urls=http://{LOOPBACK}:{self.advertise_port}"
        return [adv if a.startswith("--initial-advertise-peer-urls=") else a for a in super().command()]


@dataclass
class RunConfig:
    seed: int
    scenario: str
    duration: float = 8.0
    clients: int = 6
    keys: int = 5
    frontends: int = 0
    heartbeat_ms: int = HEARTBEAT_MS
    election_ms: int = ELECTION_MS


@dataclass
class RunResult:
    config: RunConfig
    history_path: Path
    problems: list[str] = field(default_factory=list)
    stats: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = "ok" if self.ok else "FAILED"
        s = f"{head} seed={self.config.seed} scenario={self.config.scenario} history={self.history_path}"
        stats = " ".join(f"{k}={v}" for k, v in self.stats.items())
        return f"{s}\n  {stats}" + "".join(f"\n  - {p}" for p in self.problems)


def _member_args(cfg: RunConfig) -> tuple[str, ...]:
    return (f"--heartbeat-interval={cfg.heartbeat_ms}", f"--election-timeout={cfg.election_ms}",
            f"--client-frontends={cfg.frontends}")


def start_members(group: ServerGroup, root: Path, cfg: RunConfig, proxied: bool) -> tuple[list[Server], PeerProxies | None]:
    """Three members (behind peer proxies if asked; the proxies must then be started before the
    members can elect a leader, which ``run`` does)."""
    if not proxied:
        return group.start_cluster("petcd", 3, extra_args=_member_args(cfg)), None
    names = ["m1", "m2", "m3"]
    ports = free_ports(9)
    initial = ",".join(f"{n}=http://{LOOPBACK}:{ports[3 * i + 2]}" for i, n in enumerate(names))
    members: list[Server] = [
        ProxiedServer("petcd", root / n, name=n, extra_args=_member_args(cfg), label=f"petcd-{n}",
                      client_port=ports[3 * i], peer_port=ports[3 * i + 1], initial_cluster=initial,
                      advertise_port=ports[3 * i + 2])
        for i, n in enumerate(names)
    ]
    group.servers.extend(members)

    def pids() -> dict[str, int]:
        return {m.name: m.pid for m in members if m.pid is not None}

    proxies = PeerProxies({
        m.name: PeerProxy(m.name, ports[3 * i + 2], m.peer_port, pids) for i, m in enumerate(members)
    })
    return members, proxies


def _revision(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as ch:
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        return int(kv.Range(pb.RangeRequest(key=PREFIX), timeout=10).header.revision)


def _hash_kv(endpoint: str, revision: int) -> tuple[int, int]:
    with grpc.insecure_channel(endpoint) as ch:
        m = pb_grpc.MaintenanceStub(ch)  # type: ignore[no-untyped-call]
        r = m.HashKV(pb.HashKVRequest(revision=revision), timeout=10)
        return int(r.hash), int(r.compact_revision)


def patch_history(ops: list[Op], truth: list[Event]) -> list[Op]:
    """Settle what the event history tells about writes whose outcome the client did not learn.

    Every value is written once, so a put (or a txn's put) of value v took effect exactly when
    v is in the event history, at that event's revision R; it then gets R as its answer, and as
    its return time the earliest return of any op that saw revision R or later (the write was
    applied before that op took effect). One whose value is absent never took effect and is
    dropped (a txn whose compare failed changes nothing either). Unknown deletes and revokes stay
    unknown. A write refused for space whose value is in the event history is settled as an
    unknown one (etcd 3.5 may apply a write and answer NOSPACE, see ``refused_but_applied``).
    """
    by_value = {(e.key, e.value): e.revision for e in truth if e.kind == "put"}
    seen = sorted((op.revision() or 0, op.ret) for op in ops if op.output is not None)
    # earliest return among ops that saw at least revision r: a suffix minimum over revisions
    revs = [r for r, _ in seen]
    suffix_min: list[float] = [math.inf] * (len(seen) + 1)
    for i in range(len(seen) - 1, -1, -1):
        suffix_min[i] = min(seen[i][1], suffix_min[i + 1])
    out: list[Op] = []
    applied = set(refused_but_applied(ops, truth))
    for op in ops:
        if (op.output is not None and op not in applied) or isinstance(op.input, Delete | LeaseRevoke):
            out.append(op)
            continue
        put = _put_of(op)
        if put is None:
            continue  # an unknown txn without a put in its success branch changes nothing
        rev = by_value.get((put.key, put.value))
        if rev is None:
            continue  # never took effect
        ret = max(op.call, suffix_min[bisect.bisect_left(revs, rev)])
        output: Output = PutOk(rev) if isinstance(op.input, Put) else TxnOk(True, rev)
        out.append(Op(op.client, op.call, ret, op.input, output))
    return out


def _put_of(op: Op) -> Put | None:
    """The put a write would make: a put's, or that of a txn's success branch."""
    put = op.input if isinstance(op.input, Put) else getattr(op.input, "then", None)
    return put if isinstance(put, Put) else None


def refused_but_applied(ops: Sequence[Op], truth: list[Event]) -> list[Op]:
    """Writes refused for space (NOSPACE) whose value is in the event history all the same.
    etcd 3.5 does that when its apply-time quota check (quotaApplierV3) finds the backend over
    quota: the write is applied and its client told NOSPACE. petcd never applies a write it
    refuses."""
    values = {(e.key, e.value) for e in truth if e.kind == "put"}
    out = []
    for op in ops:
        put = _put_of(op) if isinstance(op.output, Refused) else None
        if put is not None and (put.key, put.value) in values:
            out.append(op)
    return out


def check_writes(ops: list[Op], truth: list[Event]) -> list[str]:
    """Every acknowledged write is in the event history at its revision, as it was written."""
    at = {e.revision: e for e in truth}
    problems = []
    for op in ops:
        if not op.is_write():
            continue
        rev = op.revision()
        assert rev is not None
        ev = at.get(rev)
        inp = op.input
        branch = inp
        if hasattr(inp, "then"):
            o = op.output
            branch = inp.then if getattr(o, "succeeded", False) else inp.otherwise  # type: ignore[union-attr]
        value = getattr(branch, "value", None)
        want = ("put", value) if value is not None else ("delete", b"")
        if ev is None or ev.key != op.key or (ev.kind, ev.value) != want:
            problems.append(f"acknowledged write lost: {inp!r} answered revision {rev}, history has {ev!r}")
    return problems


async def check_members_agree(members: Sequence[Server], truths: Sequence[list[Event]], truth: list[Event],
                              watchers: Sequence[Watcher], final_rev: int) -> list[str]:
    """What the members and watchers disagree on up to ``final_rev``: each member's event history
    against ``truth`` (the first member's), every watcher's events (complete, in order) and the
    members' HashKV at that revision."""
    problems: list[str] = []
    for m, t in zip(members, truths, strict=True):
        if [e for e in t if e.revision <= final_rev] != truth:
            problems.append(f"{m.name}'s event history differs from {members[0].name}'s")
    for i, w in enumerate(watchers):
        got = [e for e in w.events if e.revision <= final_rev]
        problems += [f"watcher {i}: {p}" for p in w.problems]
        if got != truth:
            missing = len({e.revision for e in truth} - {e.revision for e in got})
            problems.append(f"watcher {i}: {len(got)} events, history has {len(truth)} ({missing} missing)")
    hashes = {}
    for m in members:
        deadline = now() + 20
        while True:
            try:
                hashes[m.name] = await asyncio.to_thread(_hash_kv, m.endpoint, final_rev)
                break
            except grpc.RpcError:
                if now() > deadline:
                    raise
                await asyncio.sleep(0.2)
    if len(set(hashes.values())) != 1:
        problems.append(f"HashKV at revision {final_rev} differs: {hashes}")
    return problems


async def run(root: Path, cfg: RunConfig) -> RunResult:
    root.mkdir(parents=True, exist_ok=True)
    result = RunResult(cfg, root / "history.json")
    rnd = random.Random(cfg.seed)
    group = ServerGroup(root)
    proxied = cfg.scenario in NEEDS_PROXIES
    recorder: Recorder | None = None
    faults: Faults | None = None
    watchers: list[Watcher] = []
    started = time.monotonic()
    try:
        members, proxies = start_members(group, root, cfg, proxied)
        if proxies is not None:
            await proxies.start()

            def spawn_and_wait() -> None:
                for m in members:
                    m.spawn()
                for m in members:
                    m.wait_ready()

            await asyncio.to_thread(spawn_and_wait)
        endpoints = [m.endpoint for m in members]
        start_rev = await asyncio.to_thread(_revision, endpoints[0]) + 1
        keys = [PREFIX + f"k{i}".encode() for i in range(cfg.keys)]
        recorder = Recorder(endpoints, keys, cfg.seed)
        faults = Faults(members, cfg.election_ms / 1000, rnd, proxies)
        stop = asyncio.Event()
        watchers = [Watcher(endpoints, start_rev, i) for i in range(len(endpoints))]
        watch_tasks = [asyncio.ensure_future(w.run(stop)) for w in watchers]
        keeper = LeaseKeeper(endpoints, cfg.seed)
        lease_stop = asyncio.Event()
        keeper_task = asyncio.ensure_future(keeper.run(lease_stop))
        until = now() + cfg.duration
        clients = [asyncio.ensure_future(recorder.client(c, until)) for c in range(cfg.clients)]

        async def fault() -> None:
            await asyncio.sleep(rnd.uniform(1.0, cfg.duration / 2))
            await SCENARIOS[cfg.scenario](faults)

        await asyncio.gather(fault(), *clients)
        await asyncio.to_thread(faults.heal)
        await recorder.final_reads(cfg.clients, now() + 30)
        final_rev = max(op.revision() or 0 for op in recorder.ops[-len(keys):])
        truths = [await collect_events(ep, start_rev, final_rev) for ep in endpoints]
        truth = [e for e in truths[0] if e.revision <= final_rev]
        # the watchers catch up, then stop
        end = now() + 20
        while any(w.next_revision <= (truth[-1].revision if truth else 0) for w in watchers) and now() < end:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*watch_tasks)
        lease_stop.set()
        await keeper_task
        result.problems += keeper.problems

        patched = patch_history(recorder.ops, truth)
        save_history(root / "history.json", patched, {"seed": cfg.seed, "scenario": cfg.scenario})
        v = check(patched)
        if not v.ok:
            result.problems.append(f"history: {v.message}")
        result.problems += check_writes(recorder.ops, truth)
        result.problems += await check_members_agree(members, truths, truth, watchers, final_rev)
        unknown = sum(1 for op in recorder.ops if op.output is None)
        result.stats.update(lease_renewals=keeper.renewals, lease_max_gap=round(keeper.max_gap, 1))
        result.stats.update(ops=len(recorder.ops), unknown=unknown, final_revision=final_rev,
                            events=len(truth), reconnects=sum(w.reconnects for w in watchers),
                            errors=dict(recorder.errors))
    except Exception as exc:  # the run itself broke: a failure with the seed, like any other
        result.problems.append(f"run failed: {type(exc).__name__}: {exc}")
        for m in group.servers:
            if not m.is_running():
                result.problems.append(f"{m.name} is down; its log ends:\n{m.log_tail(15)}")
    finally:
        result.stats["seconds"] = round(time.monotonic() - started, 1)
        if faults is not None:
            await _stop_proxies(faults.proxies)
        await asyncio.to_thread(group.close)
        raw = recorder.ops if recorder else []
        if not result.history_path.exists():
            save_history(result.history_path, raw, {"seed": cfg.seed, "scenario": cfg.scenario})
        save_history(root / "history-raw.json", raw, {
            "seed": cfg.seed, "scenario": cfg.scenario, "duration": cfg.duration, "clients": cfg.clients,
            "keys": cfg.keys, "faults": faults.log if faults else [], "problems": result.problems,
            "stats": {k: v for k, v in result.stats.items()},
        })
    return result


async def _stop_proxies(proxies: PeerProxies | None) -> None:
    if proxies is not None:
        await proxies.stop()


def run_sync(root: Path, cfg: RunConfig) -> RunResult:
    return asyncio.run(run(root, cfg))
