"""Wait: triggers, and deadlines served by one timer (short real-time deadlines)."""

from __future__ import annotations

import asyncio
import time

import pytest

from petcd.clock import LoopClock, ManualClock
from petcd.server.wait import Wait


def test_trigger_delivers_results_and_errors() -> None:
    async def main() -> None:
        w = Wait(LoopClock())
        ok, bad = w.register(1), w.register(2)
        with pytest.raises(ValueError):
            w.register(1)
        w.trigger(1, "done")
        w.trigger(2, KeyError("x"))
        w.trigger(3, "nobody waits")
        assert await ok == "done"
        with pytest.raises(KeyError):
            await bad
        assert not w.is_registered(1)

    asyncio.run(main())


def test_deadlines_expire_in_order_and_spare_triggered_waiters() -> None:
    async def main() -> None:
        w = Wait(LoopClock())
        now = time.monotonic()
        futs = {i: w.register(i) for i in range(1, 6)}
        for i in range(1, 6):
            w.expire_at(i, now + 0.02 * i)
        w.trigger(2, "early")  # triggered before its deadline: never times out
        w.cancel(4)  # gone: its deadline is skipped
        await asyncio.sleep(0.07)
        assert futs[1].done() and isinstance(futs[1].exception(), TimeoutError)
        assert futs[2].result() == "early"
        assert futs[3].done() and isinstance(futs[3].exception(), TimeoutError)
        assert not futs[4].done()
        assert not futs[5].done()  # due at 0.1 s
        with pytest.raises(TimeoutError):
            await futs[5]
        assert time.monotonic() - now >= 0.1

    asyncio.run(main())


def test_an_earlier_deadline_out_of_order_rearms_the_timer() -> None:
    async def main() -> None:
        w = Wait(LoopClock())
        now = time.monotonic()
        late, early, past = w.register(1), w.register(2), w.register(3)
        w.expire_at(1, now + 5.0)
        w.expire_at(2, now + 0.02)  # before the queued one: inserted in place
        w.expire_at(3, now - 1.0)  # already passed: fails at once
        with pytest.raises(TimeoutError):
            await past
        with pytest.raises(TimeoutError):
            await early
        assert time.monotonic() - now < 1.0  # not held back by the later deadline's timer
        assert not late.done()
        w.trigger(1, "ok")
        assert await late == "ok"

    asyncio.run(main())


def test_fail_all_fails_waiters_and_drops_deadlines() -> None:
    async def main() -> None:
        w = Wait(LoopClock())
        fut = w.register(7)
        w.expire_at(7, time.monotonic() + 0.01)
        w.fail_all(lambda: RuntimeError("stopped"))
        with pytest.raises(RuntimeError):
            await fut
        await asyncio.sleep(0.03)  # the cancelled timer does not fire on the cleared queue
        fresh = w.register(8)
        w.expire_at(8, time.monotonic() + 0.01)
        with pytest.raises(TimeoutError):
            await fresh

    asyncio.run(main())


def test_deadlines_follow_the_injected_clock() -> None:
    async def main() -> None:
        clock = ManualClock()
        w = Wait(clock)
        fut = w.register(9)
        w.expire_at(9, 5.0)
        clock.advance(4.9)
        await asyncio.sleep(0.01)  # real time passing does not matter
        assert not fut.done()
        clock.advance(0.2)
        with pytest.raises(TimeoutError):
            await fut

    asyncio.run(main())
