"""Automatic compaction (--auto-compaction-mode / --auto-compaction-retention), as etcd does it.

The decision logic is pure: ``observe(now, rev)`` is called on a fixed interval with the
time and the store's current revision and returns a revision to compact, or None. The
server runs it on its leader and proposes the compaction through raft.

- periodic, retention P: every P/10 (at most 6 minutes) the current revision is sampled;
  every min(P, 1 hour) the store is compacted to the revision sampled P ago, so at least P
  of history is kept. With P = 12h that is "compact every hour, keep 12 hours".
- revision, retention N: every 5 minutes, compact to current - N when that moved forward.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable

from petcd.clock import Clock

log = logging.getLogger("petcd.compactor")

HOUR = 3600.0
REVISION_CHECK_INTERVAL = 300.0


class PeriodicCompactor:
    def __init__(self, period: float, start: float) -> None:
        self.period = period
        self.compact_every = min(period, HOUR)
        self.sample_every = self.compact_every / 10
        self._samples: deque[tuple[float, int]] = deque()
        self._last_compact_at = start
        self._last_rev = 0

    @property
    def interval(self) -> float:
        return self.sample_every

    def observe(self, now: float, rev: int) -> int | None:
        self._samples.append((now, rev))
        # keep only what a future compaction may still need
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.period:
            self._samples.popleft()
        if now - self._last_compact_at < self.compact_every:
            return None
        taken_at, target = self._samples[0]
        if taken_at > now - self.period or target <= self._last_rev:
            return None
        self._last_compact_at = now
        self._last_rev = target
        return target


class RevisionCompactor:
    def __init__(self, retention: int, start: float) -> None:
        self.retention = retention
        self._last_rev = 0

    @property
    def interval(self) -> float:
        return REVISION_CHECK_INTERVAL

    def observe(self, now: float, rev: int) -> int | None:
        target = rev - self.retention
        if target <= 0 or target <= self._last_rev:
            return None
        self._last_rev = target
        return target


Compactor = PeriodicCompactor | RevisionCompactor


def make_compactor(mode: str, retention_value: int, start: float) -> Compactor | None:
    """retention_value: nanoseconds for periodic, a revision count for revision; 0 = off."""
    if retention_value <= 0:
        return None
    if mode == "revision":
        return RevisionCompactor(retention_value, start)
    return PeriodicCompactor(retention_value / 1e9, start)


async def run_compactor(
    compactor: Compactor,
    clock: Clock,
    current_rev: Callable[[], int],
    is_leader: Callable[[], bool],
    compact: Callable[[int], Awaitable[None]],
) -> None:
    """Sample on the compactor's interval and compact on the leader only."""
    while True:
        await clock.sleep(compactor.interval)
        target = compactor.observe(clock.now(), current_rev())
        if target is None or not is_leader():
            continue
        try:
            await compact(target)
            log.info("auto-compacted at revision %d", target)
        except Exception as exc:  # a compacted or stale revision is expected after restarts
            log.warning("auto-compaction at revision %d failed: %s", target, exc)
