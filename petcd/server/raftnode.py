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
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import MemoryStorage, RawNode, Ready
from petcd.wal import WAL, Snapshotter, WalSnapshot

log = logging.getLogger("petcd.raft")

ApplyFn = Callable[[Ready], Awaitable[None]]
SendFn = Callable[[Sequence[raftpb.Message]], None]
T = TypeVar("T")


class IoThread:
    """One thread that runs blocking storage work in submission order (WAL writes must stay in
    order), awaited from the loop.

    Leaner than ThreadPoolExecutor + run_in_executor, whose futures, work items and callback
    chains cost more than the rest of handling a small Ready: here a job is one queue put, and
    its result comes back with one call_soon_threadsafe. A job whose awaiting future was
    cancelled before it started is skipped, as the executor would. The thread is a daemon
    started with the first job; stop() lets queued jobs finish, joins it, and refuses new jobs.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any],
                                            Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._stopped:
            raise RuntimeError("the I/O thread is stopped")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put((loop, fut, fn, args))
        return fut

    def stop(self) -> None:
        self._stopped = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _main(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, fut, fn, args = job
            if fut.cancelled():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting task
                _deliver(loop, _set_exception, fut, exc)
            else:
                _deliver(loop, _set_result, fut, result)


def _deliver(loop: asyncio.AbstractEventLoop, cb: Callable[[asyncio.Future[Any], Any], None],
             fut: asyncio.Future[Any], value: Any) -> None:
    try:
        loop.call_soon_threadsafe(cb, fut, value)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


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
        self._io = IoThread("petcd-wal")
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
        self._io.stop()

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
        snap = rd.snapshot
        has_snap = snap is not None and snap.metadata.index > 0
        if has_snap:
            assert snap is not None
            await self._io.run(self._save_snapshot, snap)
        if rd.hard_state is not None or rd.entries:
            await self._io.run(self.wal.save, rd.hard_state, rd.entries, rd.must_sync)
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
        await self._io.run(fn)
