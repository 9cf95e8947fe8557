"""The raft node: the pure state machine in ``petcd.raft`` turned into a running member (etcd's
``raftNode``).

How it works. A :class:`RaftNode` owns the :class:`RawNode`, its :class:`MemoryStorage`, the WAL,
the snapshotter, the driver task, the ticker task and the WAL I/O thread. Nobody else touches
the RawNode: everyone calls this object's methods (step a peer message, propose, propose a conf
change, read index, transfer leadership, campaign, report unreachable / snapshot status), and
each wakes the driver itself. The driver task then drains every pending Ready in order:

1. persist: a snapshot (snap file, then its WAL marker), then hard state and entries to
   the WAL with one write and at most one fsync; the fsync runs in the I/O thread so
   the loop keeps accepting proposals, which pile up in raft's unstable log and go
   out together in the next Ready (group commit);
2. copy what was persisted into the in-memory raft log (``MemoryStorage``);
3. send the Ready's messages (only now, so vote and append replies follow persistence);
4. tell the server what the Ready says about leader, term, commit and read states
   (``on_ready``, at once);
5. push the Ready's committed entries to the apply queue (``petcd.server.applyqueue``),
   worked by one task in log order (or apply them itself, see below);
6. ``advance``.

The driver never waits for the backend: an apply held up by a defrag only holds up the queue,
while heartbeats and replication go on (etcd's raftNode does the same). Where raft needs the
apply done before it advances, a Ready that installs a snapshot or commits conf changes, the
driver waits for the queue to drain and applies that Ready itself before ``advance`` (raft's
configuration must be the applied one before it goes on, and takes the next conf change only
once it counts this one applied).
A failure to persist or to apply stops the driver, the ticker and the queue and is reported once
(``on_fatal``).

Ticks come from the injected clock every heartbeat interval; the ticker only decides *when*
to tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from petcd.clock import Clock, IoLane
from petcd.iothread import IoThread
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import MemoryStorage, RawNode, Ready, Status
from petcd.server.applyqueue import ApplyFn, ApplyQueue
from petcd.wal import WAL, Snapshotter, WalSnapshot

log = logging.getLogger("petcd.raft")

ReadyFn = Callable[[Ready], None]
SendFn = Callable[[Sequence[raftpb.Message]], None]
FatalFn = Callable[[BaseException], None]

_CONF_CHANGE = raftpb.EntryConfChange

__all__ = ["ApplyFn", "IoThread", "RaftNode", "ReadyFn", "SendFn"]


class RaftNode:
    def __init__(
        self,
        node: RawNode,
        storage: MemoryStorage,
        wal: WAL,
        snapshotter: Snapshotter,
        clock: Clock,
        tick_seconds: float,
    ) -> None:
        self._node = node
        self._storage = storage
        self._wal = wal
        self._snapshotter = snapshotter
        self._clock = clock
        self.tick_seconds = tick_seconds
        self._wake = asyncio.Event()
        self._stopped = False
        self._campaign = False  # asked for; done by the driver between Readies
        self._failed = False
        self._tasks: list[asyncio.Task[None]] = []
        # one lane (a thread on real time): WAL writes must stay in order
        self._io: IoLane = clock.io_lane("petcd-wal")

    # -- life cycle -------------------------------------------------------------------

    def advance_ticks(self, ticks: int) -> None:
        """Tick raft ``ticks`` times before the driver starts (--initial-election-tick-advance)."""
        for _ in range(ticks):
            self._node.tick()

    def start(self, on_ready: ReadyFn, apply: ApplyFn, send: SendFn, on_fatal: FatalFn) -> None:
        """Run the driver: send(messages) after each persist, on_ready(ready) at once for its
        soft state, hard state and read states, apply(ready) for its snapshot and committed
        entries, in order, from the apply queue's task; on_fatal(exc) once if persisting or
        applying fails (the member must stop)."""

        def fail(exc: BaseException) -> None:
            self._fail(exc, queue, on_fatal)

        def ended(task: asyncio.Task[None]) -> None:
            # a task that dies of an error it does not handle (a bug) leaves a node that no
            # longer ticks, persists or applies: as fatal as a failed persist
            if not task.cancelled() and (exc := task.exception()) is not None:
                fail(exc)

        queue = ApplyQueue(apply, fail)
        for coro, name in ((self._run(queue, on_ready, send, fail), "raft-driver"), (self._ticker(), "raft-ticker"),
                           (queue.run(), "raft-apply")):
            task = asyncio.create_task(coro, name=name)
            task.add_done_callback(ended)
            self._tasks.append(task)

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._io.stop()

    def close(self) -> None:
        """Close the WAL (after stop)."""
        self._wal.close()

    # -- inputs: each wakes the driver ------------------------------------------------

    def step(self, m: raftpb.Message) -> None:
        """A message from a peer (RaftError if raft refuses it)."""
        try:
            self._node.step(m)
        finally:
            self._wake.set()

    def propose(self, data: bytes) -> None:
        self._node.propose(data)
        self._wake.set()

    def propose_conf_change(self, cc: raftpb.ConfChange) -> None:
        self._node.propose_conf_change(cc)
        self._wake.set()

    def read_index(self, ctx: bytes) -> None:
        self._node.read_index(ctx)
        self._wake.set()

    def transfer_leader(self, target: int) -> None:
        self._node.transfer_leader(target)
        self._wake.set()

    def campaign(self) -> None:
        # by the driver, once the Ready being applied is advanced: raft refuses to campaign
        # while a committed conf change is not counted applied, which is the case while the
        # fresh member's own bootstrap entries are applied (a refusal cost it an election
        # timeout, 1-2 s, before it led)
        self._campaign = True
        self._wake.set()

    def report_unreachable(self, peer: int) -> None:
        self._node.report_unreachable(peer)
        self._wake.set()

    def report_snapshot(self, peer: int, failed: bool) -> None:
        self._node.report_snapshot(peer, failed)
        self._wake.set()

    # -- called while applying --------------------------------------------------------

    def apply_conf_change(self, cc: raftpb.ConfChange) -> raftpb.ConfState:
        return self._node.apply_conf_change(cc)

    def status(self) -> Status:
        return self._node.status()

    def voters(self) -> list[int]:
        return list(self._node.status().config.voters)

    @property
    def wal(self) -> WAL:
        """The WAL (read by /metrics for its fsync durations and bytes written)."""
        return self._wal

    def last_index(self) -> int:
        return self._storage.last_index()

    # -- snapshots of the log -----------------------------------------------------------

    def create_snapshot(self, index: int, data: bytes) -> raftpb.Snapshot:
        """A raft snapshot at the applied ``index`` holding ``data`` (the membership)."""
        return self._storage.create_snapshot(index, self._node.status().config, data)

    async def persist_snapshot(self, snap: raftpb.Snapshot, max_wals: int, max_snapshots: int) -> None:
        """Save ``snap`` (snap file, then its WAL marker), release the WAL before it and purge old
        files (--max-wals / --max-snapshots: 0 keeps everything), in WAL order."""
        index = snap.metadata.index

        def persist() -> None:
            self._save_snapshot(snap)
            self._wal.release_lock_to(index)
            self._wal.purge(max_wals)
            self._snapshotter.purge(max_snapshots)

        await self._io.run(persist)

    def compact_log(self, index: int) -> None:
        """Drop in-memory entries up to ``index`` (already covered by a snapshot)."""
        if index > self._storage.first_index():
            self._storage.compact(index)

    # -- the driver -----------------------------------------------------------------------

    async def _ticker(self) -> None:
        while not self._stopped:
            await self._clock.sleep(self.tick_seconds)
            if self._stopped:
                return
            self._node.tick()
            self._wake.set()

    def _fail(self, exc: BaseException, queue: ApplyQueue, on_fatal: FatalFn) -> None:
        if self._failed:
            return
        self._failed = True
        log.critical("raft node failed: %r", exc, exc_info=exc)
        # nothing more is persisted, sent, ticked or applied; the server stops the rest
        self._stopped = True
        self._wake.set()
        queue.close()
        on_fatal(exc)

    async def _run(self, queue: ApplyQueue, on_ready: ReadyFn, send: SendFn, fail: FatalFn) -> None:
        node = self._node
        try:
            while not self._stopped:
                await self._wake.wait()
                self._wake.clear()
                if self._campaign:
                    self._campaign = False
                    node.campaign()
                while node.has_ready() and not self._stopped:
                    rd = node.ready()
                    installs = rd.snapshot is not None and rd.snapshot.metadata.index > 0
                    inline = installs or any(e.type == _CONF_CHANGE for e in rd.committed_entries)
                    if inline:
                        # what was committed before is applied first (before a snapshot replaces
                        # the log and the state, before the configuration changes)
                        await queue.drained()
                        if self._stopped:
                            return
                    await self._handle(rd, send)
                    on_ready(rd)
                    if inline:
                        # applied here and advanced at once, as before the queue: raft takes the
                        # next conf change only once it counts this one applied, and the proposer
                        # the apply wakes may propose one straight away
                        await queue.apply_inline(rd)
                    elif rd.committed_entries:
                        queue.push(rd)
                    node.advance(rd)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a failed fsync: the member must stop
            fail(exc)

    async def _handle(self, rd: Ready, send: SendFn) -> None:
        snap = rd.snapshot
        if snap is not None and snap.metadata.index > 0:
            await self._io.run(self._save_snapshot, snap)
        else:
            snap = None
        if rd.hard_state is not None or rd.entries:
            await self._io.run(self._wal.save, rd.hard_state, rd.entries, rd.must_sync)
        if snap is not None:
            self._storage.apply_snapshot(snap)
        if rd.hard_state is not None:
            self._storage.set_hard_state(rd.hard_state)
        if rd.entries:
            self._storage.append(rd.entries)
        if rd.messages:
            send(rd.messages)

    def _save_snapshot(self, snap: raftpb.Snapshot) -> None:
        # the snap file first: a WAL marker must never point at a missing snapshot
        self._snapshotter.save_snap(snap)
        md = snap.metadata
        self._wal.save_snapshot(WalSnapshot(md.index, md.term, md.conf_state))
