"""IoThread: the raft driver's storage thread (order, results, errors, cancellation, stop)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from petcd.server.raftnode import IoThread


def test_jobs_run_in_order_on_one_thread_with_results_and_errors() -> None:
    async def main() -> None:
        io = IoThread("test-io")
        seen: list[tuple[int, int]] = []

        def job(i: int) -> int:
            seen.append((i, threading.get_ident()))
            return i * 10

        def fail() -> None:
            raise OSError("disk gone")

        futs = [io.run(job, i) for i in range(50)]
        bad = io.run(fail)
        assert await asyncio.gather(*futs) == [i * 10 for i in range(50)]
        with pytest.raises(OSError, match="disk gone"):
            await bad
        assert [i for i, _ in seen] == list(range(50))
        assert len({t for _, t in seen}) == 1 and seen[0][1] != threading.get_ident()
        io.stop()

    asyncio.run(main())


def test_a_job_cancelled_before_it_starts_is_skipped_and_stop_drains() -> None:
    async def main() -> None:
        io = IoThread("test-io")
        gate = threading.Event()
        ran: list[str] = []
        first = io.run(gate.wait)
        skipped = io.run(ran.append, "skipped")
        last = io.run(ran.append, "last")
        skipped.cancel()
        gate.set()
        await first
        await last
        io.stop()  # joins; everything queued before it has run
        assert ran == ["last"]
        with pytest.raises(RuntimeError):
            io.run(ran.append, "late")

    asyncio.run(main())
