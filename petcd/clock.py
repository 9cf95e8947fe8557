"""The one clock interface every time-dependent part of petcd is given.

Core code never reads the wall clock or sleeps on the real loop by itself: it is handed a
:class:`Clock`. :class:`LoopClock` is the real one (the running asyncio loop's monotonic
time); tests and the simulator pass :class:`ManualClock`, whose time moves only when told.
``wall()`` is for the few things that are wall-clock by nature (lease ids seeded from the
time, as etcd's, and the periodic compactor's retention in hours).

Blocking work (WAL writes and fsyncs, file copies and renames) is also handed out by the clock
(``io_lane``, ``offload``): on real time it runs in threads, so the loop goes on meanwhile; on
virtual time it runs inline, because a thread ends at a real moment the virtual clock cannot
order, and the simulator must replay the same interleaving from a seed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from petcd.iothread import IoThread

T = TypeVar("T")


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, fn: Callable[[], None]) -> TimerHandle: ...

    def io_lane(self, name: str) -> IoLane:
        """A lane for blocking storage work that must stay in submission order (the WAL)."""
        ...

    def offload(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """``fn(*args)``, blocking work that needs no order (a file copy or rename), off the loop."""
        ...


class IoLane(Protocol):
    """Blocking jobs run in submission order; each awaited (see ``petcd.iothread.IoThread``)."""

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]: ...

    def stop(self) -> None: ...


class LoopClock:
    """Real time: the running loop's clock (monotonic) and its timers."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, seconds: float, fn: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(seconds, fn)

    def io_lane(self, name: str) -> IoLane:
        return IoThread(name)

    def offload(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        return asyncio.to_thread(fn, *args)


class _ManualTimer:
    __slots__ = ("cancelled", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class InlineLane:
    """An :class:`IoLane` on virtual time: each job runs at once, on the caller's thread, and
    its future is done before ``run`` returns (a job takes no virtual time)."""

    def __init__(self) -> None:
        self._stopped = False

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._stopped:
            raise RuntimeError("the I/O lane is stopped")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # handed to the awaiting task, as the thread would
            fut.set_exception(exc)
        return fut

    def stop(self) -> None:
        self._stopped = True


class ManualClock:
    """Virtual time for tests and the simulator: ``advance(dt)`` moves time and fires the
    timers and sleeps that fall due, in deadline order (ties in scheduling order). Blocking
    work runs inline (:class:`InlineLane`)."""

    def __init__(self, start: float = 0.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def call_later(self, seconds: float, fn: Callable[[], None]) -> TimerHandle:
        timer = _ManualTimer(fn)
        heapq.heappush(self._timers, (self._now + max(0.0, seconds), next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        handle = self.call_later(seconds, wake)
        try:
            await fut
        finally:
            handle.cancel()

    def io_lane(self, name: str) -> IoLane:
        return InlineLane()

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def next_deadline(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer due on the way."""
        target = self._now + seconds
        while True:
            due = self.next_deadline()
            if due is None or due > target:
                break
            _, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            timer.fn()
        self._now = target


async def wait_for(clock: Clock, aw: Awaitable[T], seconds: float) -> T:
    """``asyncio.wait_for`` on ``clock``: the result of ``aw``, or TimeoutError once ``seconds``
    have passed on the clock (``aw`` is then cancelled)."""
    task = asyncio.ensure_future(aw)
    expired = False

    def expire() -> None:
        nonlocal expired
        if not task.done():
            expired = True
            task.cancel()

    handle = clock.call_later(seconds, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError from None
        raise
    finally:
        handle.cancel()
