"""The raft driver: turns the pure state machine in ``petcd.raft`` into a running member.

How it works. One asyncio task owns the :class:`RawNode`. Anything that changes it
(a tick, a proposal, a message from a peer, a read-index request) calls
:meth:`RaftDriver.notify`; the task then drains every pending Ready in order:

1. persist: a snapshot (snap file, then its WAL marker), then hard state and entries to
   the WAL with one write and at most one fsync; the fsync runs in a worker thread so
   the loop keeps accepting proposals, which pile up in raft's unstable log and go
   out together in the next Ready (group commit);
2. copy what was persisted into the in-memory raft log (``MemoryStorage``);
3. send the Ready's messages (only now, so vote and append replies follow persistence);
4. hand committed entries and read states to the server's apply callback;
5. ``advance``.

Ticks come from a timer every heartbeat interval; the timer is the only place that
reads the clock, and it only decides *when* to tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import MemoryStorage, RawNode, Ready
from petcd.wal import WAL, Snapshotter, WalSnapshot

log = logging.getLogger("petcd.raft")

ApplyFn = Callable[[Ready], Awaitable[None]]
SendFn = Callable[[Sequence[raftpb.Message]], None]


class RaftDriver:
    def __init__(
        self,
        node: RawNode,
        storage: MemoryStorage,
        wal: WAL,
        snapshotter: Snapshotter,
        tick_seconds: float,
        apply: ApplyFn,
        send: SendFn,
    ) -> None:
        self.node = node
        self.storage = storage
        self.wal = wal
        self.snapshotter = snapshotter
        self.tick_seconds = tick_seconds
        self._apply = apply
        self._send = send
        self._wake = asyncio.Event()
        self._stopped = False
        self._tasks: list[asyncio.Task[None]] = []
        # one thread: WAL writes must stay in order
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="petcd-wal")
        self.fatal: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="raft-driver"))
        self._tasks.append(asyncio.create_task(self._ticker(), name="raft-ticker"))

    def notify(self) -> None:
        self._wake.set()

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
        self._io.shutdown(wait=True)

    async def _ticker(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.tick_seconds)
            self.node.tick()
            self._wake.set()

    async def _run(self) -> None:
        try:
            while not self._stopped:
                await self._wake.wait()
                self._wake.clear()
                while self.node.has_ready() and not self._stopped:
                    rd = self.node.ready()
                    await self._handle(rd)
                    self.node.advance(rd)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a failed fsync or apply: the member must stop
            log.critical("raft driver failed: %r", exc, exc_info=exc)
            self.fatal = exc
            if self.on_fatal is not None:
                self.on_fatal(exc)

    async def _handle(self, rd: Ready) -> None:
        loop = asyncio.get_running_loop()
        snap = rd.snapshot
        has_snap = snap is not None and snap.metadata.index > 0
        if has_snap:
            assert snap is not None
            await loop.run_in_executor(self._io, self._save_snapshot, snap)
        if rd.hard_state is not None or rd.entries:
            await loop.run_in_executor(self._io, self.wal.save, rd.hard_state, rd.entries, rd.must_sync)
        if has_snap:
            assert snap is not None
            self.storage.apply_snapshot(snap)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        if rd.entries:
            self.storage.append(rd.entries)
        if rd.messages:
            self._send(rd.messages)
        await self._apply(rd)

    def _save_snapshot(self, snap: raftpb.Snapshot) -> None:
        # the snap file first: a WAL marker must never point at a missing snapshot
        self.snapshotter.save_snap(snap)
        md = snap.metadata
        self.wal.save_snapshot(WalSnapshot(md.index, md.term, md.conf_state))

    async def run_io(self, fn: Callable[[], None]) -> None:
        """Run blocking storage work (snapshot, WAL release) in WAL order."""
        await asyncio.get_running_loop().run_in_executor(self._io, fn)
