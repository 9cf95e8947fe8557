"""A deterministic simulator of whole petcd members (FoundationDB / TigerBeetle VOPR style).

N members (``EtcdServer`` built by ``build_member``, real WAL and LMDB files in a temp dir) run on
one event loop and one virtual clock, over a seeded network that drops, delays, duplicates,
reorders and partitions raft messages (tests/sim/net.py). Clients put, get, delete and run txns
through random live members; members crash (kill -9) and restart from their data dirs; a small
--snapshot-count with few catch-up entries makes followers that fell behind get a snapshot.

How a run goes. Nothing runs in a thread (the virtual clock runs blocking work inline, see
petcd/clock.py), so the loop alone decides the order of events: the driver lets it run until no
callback is ready, checks the running invariants, then moves the clock to the next timer. The
same seed therefore replays the same run (same event digest), and any failure prints its seed.
After the chaos, the network heals and every member restarts; the cluster must then converge.

Invariants: while running, at most one leader per term and every index applied to the same
request with the same result on every member (and again the same after a crash made a member
apply it twice); no member stops by itself. At the end: a leader within the convergence time, a
write through every member, linearizable history (tests/robustness/linearizability.py, which
also makes a lost acknowledged write a violation through the final reads), every acknowledged put
still readable at its revision on every member, and equal HashKV at common revisions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from petcd.mvcc.kvstore import RangeOptions
from petcd.raft import StateType
from petcd.server.bootstrap import Member
from petcd.server.etcdserver import EtcdServer
from tests.robustness.kvmodel import Get, Put, PutOk, Txn, TxnOk
from tests.robustness.linearizability import check

from .cluster import AppliedLog, SimClock, SimMember, boot, crash
from .net import NetParams, SimNet
from .params import SimParams
from .workload import Clients

if TYPE_CHECKING:
    from _typeshed import TraceFunction

SETTLE_LIMIT = 200_000  # loop passes without virtual time moving: something spins


class SimFailure(Exception):
    show = 40  # trace lines shown

    def __init__(self, seed: int, params: SimParams, what: str, trace: list[str]) -> None:
        self.seed = seed
        self.what = what
        tail = "\n    ".join(trace[-self.show:])
        super().__init__(
            f"member simulation failed, seed {seed}: {what}\n"
            f"  reproduce: python -m tests.sim --seed {seed}"
            f"{'' if params.chaos_seconds == SimParams.from_seed(seed).chaos_seconds else f' --chaos {params.chaos_seconds:g}'}\n"
            f"  params: {params}\n  last events:\n    {tail}"
        )


@dataclass(frozen=True)
class SimResult:
    seed: int
    virtual_seconds: float
    real_seconds: float
    ops: int
    acked_writes: int
    outcomes: dict[str, int]
    crashes: int
    partitions: int
    snapshots_installed: int
    applies: int
    leaders: int
    digest: str

    def __str__(self) -> str:
        return (f"seed {self.seed}: ok, {self.virtual_seconds:.1f} virtual s in {self.real_seconds:.1f} s, "
                f"{self.ops} ops ({self.acked_writes} acked writes), {self.crashes} crashes, "
                f"{self.partitions} partitions, {self.snapshots_installed} snapshots installed, "
                f"{self.leaders} terms with a leader, digest {self.digest[:16]}")


class _Violation(Exception):
    pass


_TraceEvent = Literal["call", "line", "return", "exception", "opcode"]


class _ThreadWatch:
    """Names the threads started while it is on.

    threading's trace hook runs first thing in every thread that module starts, so a thread is
    seen even if it ends before the next check. Threads that were there before are not counted,
    also when they end meanwhile: leftovers of earlier tests in the process, and under
    pytest-xdist execnet's (which it starts with _thread, outside the threading module).
    """

    def __init__(self) -> None:
        self.started: list[str] = []
        self._before: set[threading.Thread] = set()
        self._prev: TraceFunction | None = None

    def _hook(self, frame: FrameType, event: _TraceEvent, arg: Any) -> TraceFunction | None:
        me = threading.current_thread()
        if me not in self._before:
            self.started.append(me.name)
        # from here on the thread is traced as it would be without us (coverage, a debugger)
        sys.settrace(self._prev)
        return self._prev(frame, event, arg) if self._prev is not None else None

    def __enter__(self) -> _ThreadWatch:
        self._prev = threading.gettrace()
        self._before = set(threading.enumerate())  # includes threads started but not yet running
        threading.settrace(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        threading.settrace(self._prev)


class MemberSimulation:
    def __init__(self, seed: int, params: SimParams, root: Path) -> None:
        self.seed = seed
        self.p = params
        self.root = root
        rng = random.Random(f"member-sim-run-{seed}")
        # one stream per concern, so a change in one (say, the workload) leaves the others be
        self.rng_faults = random.Random(rng.random())
        self.clock = SimClock(random.Random(rng.random()), params.disk_latency_max)
        self._trace: collections.deque[str] = collections.deque(maxlen=400)
        self._digest = hashlib.blake2b(digest_size=32)
        self.net = SimNet(self.clock, random.Random(rng.random()),
                          NetParams(drop=params.drop, dup=params.dup, delay_max=params.delay_max, fifo=params.fifo),
                          self.trace)
        self.applied = AppliedLog()
        ids = sorted(rng.sample(range(0x1000, 0xFFFF), params.members))
        peers = [Member(i, f"m{n}", [f"http://127.0.0.1:{23800 + n}"]) for n, i in enumerate(ids)]
        self.members = [SimMember(n, i, root, params, peers) for n, i in enumerate(ids)]
        keys = [f"k{n}".encode() for n in range(params.keys)]
        self.clients = Clients(self.clock, random.Random(rng.random()), keys, params.think_max, self._live, self.trace)
        self.leaders: dict[int, int] = {}  # term -> leader
        self.loop_errors: list[str] = []
        self.crashes = 0
        self.partitions = 0
        self._restarts: list[asyncio.Task[None]] = []
        self._chaos = True
        self._threads = _ThreadWatch()

    # -- bookkeeping ------------------------------------------------------------------

    def trace(self, text: str) -> None:
        line = f"{self.clock.now():9.3f} {text}"
        self._trace.append(line)
        self._digest.update(line.encode())

    def _live(self) -> list[EtcdServer]:
        return [m.server for m in self.members if m.server is not None]

    def fail(self, what: str) -> SimFailure:
        return SimFailure(self.seed, self.p, what, list(self._trace))

    # -- running ----------------------------------------------------------------------

    def run(self) -> SimResult:
        started = time.perf_counter()
        with self._threads, asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            runner.get_loop().set_exception_handler(self._on_loop_error)
            try:
                runner.run(self._main())
            except SimFailure:
                raise
            except (_Violation, AssertionError) as exc:
                raise self.fail(str(exc)) from exc
            except Exception as exc:
                raise self.fail(f"{type(exc).__name__}: {exc}") from exc
        ops = self.clients.ops
        return SimResult(
            seed=self.seed, virtual_seconds=self.clock.now(), real_seconds=time.perf_counter() - started,
            ops=len(ops), acked_writes=sum(1 for op in ops if op.is_write()), outcomes=dict(self.clients.outcomes),
            crashes=self.crashes, partitions=self.partitions, snapshots_installed=self.net.stats.snapshots_sent,
            applies=self.applied.applies, leaders=len(self.leaders), digest=self._digest.hexdigest(),
        )

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self.loop_errors.append(f"{context.get('message')}: {exc!r}")

    async def _settle(self) -> None:
        """Run the loop until no callback is ready (virtual time stands still meanwhile)."""
        loop = asyncio.get_running_loop()
        ready = loop._ready  # type: ignore[attr-defined]
        for _ in range(SETTLE_LIMIT):
            await asyncio.sleep(0)
            if not ready:
                return
        raise _Violation("the loop never settles (a task spins without virtual time passing)")

    async def _step(self) -> None:
        await self._settle()
        self._check_running()
        due = self.clock.next_deadline()
        if due is None:
            raise _Violation("nothing is scheduled any more")
        self.clock.advance(max(0.0, due - self.clock.now()))

    async def _until(self, cond: Callable[[], bool], seconds: float, what: str) -> None:
        end = self.clock.now() + seconds
        while not cond():
            if self.clock.now() > end:
                raise _Violation(f"{what}: not after {seconds:g} virtual seconds")
            await self._step()

    async def _await(self, aw: Any, seconds: float, what: str) -> Any:
        task = asyncio.ensure_future(aw)
        await self._until(task.done, seconds, what)
        return task.result()

    async def _main(self) -> None:
        try:
            await self._run()
        finally:
            # a failed run leaves members up: close their files, as a crash would
            for m in self.members:
                if m.up:
                    with contextlib.suppress(Exception):
                        await crash(m, self.net)

    async def _run(self) -> None:
        for m in self.members:
            await boot(m, self.clock, self.net, self.applied, self.seed)
        self.trace(f"started {len(self.members)} members {[f'{m.id:x}' for m in self.members]}")
        clients = [asyncio.ensure_future(self.clients.client(c)) for c in range(self.p.clients)]
        nemesis = asyncio.ensure_future(self._nemesis())
        await self._until(lambda: self.clock.now() >= self.p.chaos_seconds, self.p.chaos_seconds + 1, "chaos")
        self._chaos = False  # the nemesis ends after what it is doing (never half a crash)
        self.clients.stopping = True
        await self._until(nemesis.done, 30, "the nemesis to finish")
        nemesis.result()
        await self._until(lambda: all(t.done() for t in self._restarts), 30, "restarts to finish")
        self.net.calm()
        self.trace("healed: network calm, every member restarts")
        for m in self.members:
            if not m.up:
                await boot(m, self.clock, self.net, self.applied, self.seed)
        await self._until(lambda: all(t.done() for t in clients), 60, "the clients to finish")
        for t in clients:
            t.result()
        await self._until(self._converged, self.p.converge_seconds, "convergence after healing")
        await self._final_round()
        self._check_end()
        for m in self.members:
            if m.server is not None:
                await m.server.stop()
                m.server = None
        await self._settle()
        self._check_threads()
        if self.loop_errors:
            raise _Violation("errors in the loop: " + "; ".join(self.loop_errors[:3]))
        if asyncio.get_running_loop()._default_executor is not None:  # type: ignore[attr-defined]
            raise _Violation("something ran in asyncio's thread pool: the run is not deterministic")

    # -- faults -------------------------------------------------------------------------

    async def _nemesis(self) -> None:
        r, p = self.rng_faults, self.p
        step = 0.1
        while self._chaos:
            await self.clock.sleep(step)
            if r.random() < step / p.crash_every:
                await self._crash_one(r)
            if not self.net.blocked and r.random() < step / p.partition_every:
                self._partition(r)
                heal_at = self.clock.now() + r.uniform(0.2, p.partition_max)
                self.clock.call_later(heal_at - self.clock.now(), self._heal)

    def _leader(self) -> SimMember | None:
        for m in self.members:
            if m.server is not None and m.server.role == StateType.LEADER:
                return m
        return None

    async def _crash_one(self, r: random.Random) -> None:
        up = [m for m in self.members if m.up]
        if not up:
            return
        leader = self._leader()
        victim = leader if leader is not None and r.random() < 0.4 else r.choice(up)
        self.crashes += 1
        power = self.p.power_loss and r.random() < 0.5
        lost = await crash(victim, self.net, r if power else None)
        self.trace(f"crash {victim.id:x}{f' with power loss ({lost} unsynced WAL bytes lost)' if power else ''}")
        downtime = r.uniform(0.05, self.p.downtime_max)
        self._restarts.append(asyncio.ensure_future(self._restart_later(victim, downtime)))

    async def _restart_later(self, m: SimMember, downtime: float) -> None:
        await self.clock.sleep(downtime)
        if not m.up:
            await boot(m, self.clock, self.net, self.applied, self.seed)
            self.trace(f"restarted {m.id:x} (incarnation {m.incarnation})")

    def _partition(self, r: random.Random) -> None:
        ids = [m.id for m in self.members]
        leader = self._leader()
        kind = r.random()
        if kind < 0.4 and leader is not None:
            side = [leader.id]  # the leader alone
        else:
            side = r.sample(ids, r.randint(1, len(ids) // 2))
        rest = [i for i in ids if i not in side]
        one_way = r.random() < 0.2
        self.net.split(side, rest, one_way=one_way)
        self.partitions += 1
        self.trace(f"partition {[f'{i:x}' for i in side]} | {[f'{i:x}' for i in rest]}{' one-way' if one_way else ''}")

    def _heal(self) -> None:
        if self.net.blocked:
            self.net.heal()
            self.trace("partition healed")

    # -- invariants ---------------------------------------------------------------------

    def _check_threads(self) -> None:
        if self._threads.started:
            raise _Violation(f"a thread started during the simulation ({self._threads.started}): "
                             "the run is not deterministic")

    def _check_running(self) -> None:
        self._check_threads()
        for m in self.members:
            srv = m.server
            if srv is None:
                continue
            if srv.fatal is not None:
                raise _Violation(f"member {m.id:x} failed: {srv.fatal!r}")
            if srv.stopping:
                raise _Violation(f"member {m.id:x} stopped by itself")
            if srv.role == StateType.LEADER:
                known = self.leaders.get(srv.term)
                if known is None:
                    self.leaders[srv.term] = m.id
                    self.trace(f"leader {m.id:x} in term {srv.term}")
                elif known != m.id:
                    raise _Violation(f"two leaders in term {srv.term}: {known:x} and {m.id:x}")

    def _converged(self) -> bool:
        servers = self._live()
        if len(servers) != len(self.members):
            return False
        leaders = [s for s in servers if s.role == StateType.LEADER]
        if len(leaders) != 1:
            return False
        lead = leaders[0]
        return all(s.leader == lead.member_id and s.ready.is_set() and s.applied_index == lead.committed_index
                   for s in servers)

    async def _final_round(self) -> None:
        """A write through every member, then linearizable reads of every key on every member."""
        for n, srv in enumerate(self._live()):
            out = await self._await(self.clients.call(1000 + n, srv, Put(b"final", f"m{n}".encode())), 30,
                                    f"a final put through member {srv.member_id:x}")
            if out is None:
                raise _Violation(f"a final put through member {srv.member_id:x} failed on a healed cluster")
        for n, srv in enumerate(self._live()):
            for key in [*self.clients.keys, b"final"]:
                out = await self._await(self.clients.call(2000 + n, srv, Get(key)), 30, "a final read")
                if out is None:
                    raise _Violation(f"a final read of {key!r} on member {srv.member_id:x} failed")
        await self._until(self._converged, 30, "convergence after the final round")

    def _check_end(self) -> None:
        ops = self.clients.ops
        verdict = check(ops)
        if not verdict.ok:
            raise _Violation(f"history not linearizable: {verdict.message}")
        servers = self._live()
        for op in ops:
            inp, out = op.input, op.output
            put: Put | None = None
            if isinstance(inp, Put) and isinstance(out, PutOk):
                put, rev = inp, out.revision
            elif isinstance(inp, Txn) and isinstance(out, TxnOk) and out.succeeded and isinstance(inp.then, Put):
                put, rev = inp.then, out.revision
            if put is None:
                continue
            for srv in servers:
                kvs = srv.store.range(put.key, b"", RangeOptions(rev=rev)).kvs
                if not kvs or kvs[0].value != put.value or kvs[0].mod_revision != rev:
                    raise _Violation(f"acknowledged put {put.key!r}={put.value!r} at revision {rev} is not on "
                                     f"member {srv.member_id:x} (found {list(kvs)})")
        revs = {srv.store.rev for srv in servers}
        if len(revs) != 1:
            raise _Violation(f"members end at different revisions: {sorted(revs)}")
        top = revs.pop()
        for rev in sorted({top, max(1, top // 2), max(1, top - 3)}):
            hashes = {srv.member_id: srv.store.hash_kv(rev)[0] for srv in servers}
            if len(set(hashes.values())) != 1:
                raise _Violation(f"HashKV differs at revision {rev}: { {f'{k:x}': v for k, v in hashes.items()} }")
            self.trace(f"HashKV at {rev}: {next(iter(hashes.values())):08x}")
        self._digest.update(repr([(op.client, op.call, op.ret, op.input, op.output) for op in ops]).encode())


def run_seed(seed: int, chaos_seconds: float | None = None) -> SimResult:
    params = SimParams.from_seed(seed) if chaos_seconds is None else SimParams.from_seed(seed, chaos_seconds)
    with tempfile.TemporaryDirectory(prefix=f"member-sim-{seed}-") as root:
        return MemberSimulation(seed, params, Path(root)).run()


__all__ = ["MemberSimulation", "SimFailure", "SimResult", "run_seed"]
