"""Token bucket for ``--rate``: ``rate`` tokens a second, at most ``burst`` saved up.

etcd's benchmark uses a limiter with a burst of one, so requests leave evenly spaced rather than in
clumps; that is the default here. Waiters reserve a token at once (the bucket may go negative) and
sleep until it is theirs, so concurrent clients are served in arrival order without polling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        burst: int = 1,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._now = now
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = now()

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it (0 if none)."""
        t = self._now()
        self._tokens = min(float(self.burst), self._tokens + (t - self._stamp) * self.rate)
        self._stamp = t
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)


class Unlimited:
    """``--rate 0``: no limit."""

    async def wait(self) -> None:
        return None


Limiter = TokenBucket | Unlimited
