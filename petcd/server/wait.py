"""Wait for the apply loop: a caller registers an id, the apply loop triggers it.

Deadlines. A waiter may be given a deadline (``expire_at``); its future then fails with
TimeoutError at that time unless triggered first. One loop timer serves every waiter: the
deadlines wait in a queue ordered by time, the timer is armed for the earliest one, and entries
whose waiter is gone (triggered, cancelled) are dropped from the head of the queue as new ones
arrive, so the queue holds about as many entries as there are waiters. A timer per request (a
libuv timer to start, stop and close) cost more than the rest of the wait. Every proposal's
deadline is its start time plus the same request timeout, so deadlines nearly always arrive in
order and go on the end of the queue; the rare one that does not (a proposal that first waited
for a leader) is inserted in place.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Callable
from typing import Any

from petcd.clock import Clock, TimerHandle


class Wait:
    def __init__(self, clock: Clock) -> None:
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._clock = clock
        self._deadlines: deque[tuple[float, int]] = deque()  # (deadline, id), earliest first
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0  # the deadline the timer is armed for

    def register(self, req_id: int) -> asyncio.Future[Any]:
        if req_id in self._futures:
            raise ValueError(f"duplicate wait id {req_id:x}")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[req_id] = fut
        return fut

    def expire_at(self, req_id: int, deadline: float) -> None:
        """Fail req_id's future with TimeoutError once the clock reaches deadline, unless it
        is triggered (or cancelled) first."""
        q = self._deadlines
        futures = self._futures
        while q and q[0][1] not in futures:
            q.popleft()
        if not q or deadline >= q[-1][0]:
            q.append((deadline, req_id))
        else:
            bisect.insort(q, (deadline, req_id))
        if self._timer is None or deadline < self._timer_at:
            self._arm(q[0][0])

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._clock.call_later(max(0.0, at - self._clock.now()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._clock.now()
        q = self._deadlines
        futures = self._futures
        while q:
            deadline, req_id = q[0]
            fut = futures.get(req_id)
            if fut is not None and not fut.done():
                if deadline > now:
                    # the loop's timers may fire a little early: wait for the rest
                    self._arm(deadline)
                    return
                fut.set_exception(TimeoutError())
            q.popleft()

    def trigger(self, req_id: int, result: Any) -> None:
        fut = self._futures.pop(req_id, None)
        if fut is not None and not fut.done():
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def cancel(self, req_id: int) -> None:
        self._futures.pop(req_id, None)

    def is_registered(self, req_id: int) -> bool:
        return req_id in self._futures

    def fail_all(self, make_error: Callable[[], BaseException]) -> None:
        """Fail every waiter, each with its own new error from make_error."""
        futures, self._futures = self._futures, {}
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut in futures.values():
            if not fut.done():
                fut.set_exception(make_error())
