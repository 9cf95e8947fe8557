"""Cheap latency histograms for the few hot spots that are timed (WAL fsync, backend commit).

A shared leaf (imports nothing of petcd): the WAL and the server record into a
:class:`Durations`, and ``petcd.http.metrics`` reads it at scrape time and exports it as a
Prometheus histogram. Recording is a bisect and three additions, with no lock: each histogram
has a single writer (the WAL thread, or the event loop), and a scrape that races one update is
at most one observation behind.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["Durations", "exponential_buckets"]


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """``count`` upper bounds from ``start``, each ``factor`` times the previous (Prometheus's
    ExponentialBuckets); values are rounded so they print as etcd's do (0.001, 0.002, ...)."""
    return tuple(round(start * factor**i, 12) for i in range(count))


class Durations:
    """Observations (seconds) counted per bucket; ``counts[i]`` holds those <= ``bounds[i]``
    and above the previous bound, ``counts[-1]`` those above the last bound."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) for every bound and +Inf, as Prometheus exports."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
