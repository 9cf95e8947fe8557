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
4. hand committed entries and read states to the server's apply callback;
5. ``advance``.

Ticks come from the injected clock every heartbeat interval; the ticker only decides *when*
to tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from petcd.clock import Clock
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import MemoryStorage, RawNode, Ready, Status
from petcd.server.iothread import IoThread
from petcd.wal import WAL, Snapshotter, WalSnapshot

log = logging.getLogger("petcd.raft")

ApplyFn = Callable[[Ready], Awaitable[None]]
SendFn = Callable[[Sequence[raftpb.Message]], None]
FatalFn = Callable[[BaseException], None]

__all__ = ["ApplyFn", "IoThread", "RaftNode", "SendFn"]


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
        self._tasks: list[asyncio.Task[None]] = []
        # one thread: WAL writes must stay in order
        self._io = IoThread("petcd-wal")

    # -- life cycle -------------------------------------------------------------------

    def advance_ticks(self, ticks: int) -> None:
        """Tick raft ``ticks`` times before the driver starts (--initial-election-tick-advance)."""
        for _ in range(ticks):
            self._node.tick()

    def start(self, apply: ApplyFn, send: SendFn, on_fatal: FatalFn) -> None:
        """Run the driver: send(messages) after each persist, apply(ready) for committed
        entries; on_fatal(exc) if persisting or applying fails (the member must stop)."""
        self._tasks.append(asyncio.create_task(self._run(apply, send, on_fatal), name="raft-driver"))
        self._tasks.append(asyncio.create_task(self._ticker(), name="raft-ticker"))

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
        self._node.campaign()
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
            self._node.tick()
            self._wake.set()

    async def _run(self, apply: ApplyFn, send: SendFn, on_fatal: FatalFn) -> None:
        node = self._node
        try:
            while not self._stopped:
                await self._wake.wait()
                self._wake.clear()
                while node.has_ready() and not self._stopped:
                    rd = node.ready()
                    await self._handle(rd, apply, send)
                    node.advance(rd)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a failed fsync or apply: the member must stop
            log.critical("raft driver failed: %r", exc, exc_info=exc)
            on_fatal(exc)

    async def _handle(self, rd: Ready, apply: ApplyFn, send: SendFn) -> None:
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
        await apply(rd)

    def _save_snapshot(self, snap: raftpb.Snapshot) -> None:
        # the snap file first: a WAL marker must never point at a missing snapshot
        self._snapshotter.save_snap(snap)
        md = snap.metadata
        self._wal.save_snapshot(WalSnapshot(md.index, md.term, md.conf_state))
