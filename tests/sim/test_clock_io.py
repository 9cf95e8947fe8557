"""Blocking work handed out by the clock: threads on real time, inline on virtual time (so the
simulator decides its order), and the simulator's lane that acknowledges late but in order."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from petcd.clock import LoopClock, ManualClock
from petcd.iothread import IoThread
from tests.sim.cluster import SimClock


def test_real_time_runs_blocking_work_in_threads() -> None:
    async def main() -> None:
        clock = LoopClock()
        lane = clock.io_lane("test-lane")
        assert isinstance(lane, IoThread)
        try:
            where = await lane.run(threading.get_ident)
        finally:
            lane.stop()
        assert where != threading.get_ident()
        assert await clock.offload(threading.get_ident) != threading.get_ident()

    asyncio.run(main())


def test_virtual_time_runs_blocking_work_inline_and_in_order() -> None:
    async def main() -> None:
        clock = ManualClock()
        lane = clock.io_lane("test-lane")
        done: list[int] = []
        futs = [lane.run(done.append, i) for i in range(3)]
        # done before run() returned: nothing was left for a thread to finish at a real moment
        assert done == [0, 1, 2] and all(f.done() for f in futs)

        def boom() -> None:
            raise OSError(5, "Input/output error")

        with pytest.raises(OSError):
            await lane.run(boom)
        assert await clock.offload(threading.get_ident) == threading.get_ident()
        lane.stop()
        with pytest.raises(RuntimeError):
            lane.run(done.append, 4)

    asyncio.run(main())


def test_the_simulators_lane_acknowledges_late_but_never_out_of_order() -> None:
    async def main() -> None:
        clock = SimClock(random.Random(7), disk_latency_max=0.05)
        lane = clock.io_lane("wal")
        ran: list[int] = []
        acked: list[int] = []
        for i in range(20):
            lane.run(ran.append, i).add_done_callback(lambda f, i=i: acked.append(i))
        assert ran == list(range(20))  # the work itself is done at once, in order
        while len(acked) < 20:
            deadline = clock.next_deadline()
            assert deadline is not None
            clock.advance(deadline - clock.now())
            await asyncio.sleep(0)
        assert acked == list(range(20)) and 0 < clock.now() <= 0.05 * 20

    asyncio.run(main())
