"""Latency statistics and etcd benchmark's summary layout (etcd 3.5 ``pkg/report``).

The layout is what operators already parse: ``Summary:`` with Total, Slowest, Fastest, Average,
Stddev (seconds, ``%4.4f`` or Go's ``%g`` with ``--precise``), Requests/sec, a ten-bucket
response time histogram, the latency distribution at 10 % ... 99.9 %, and the error distribution.
Stddev is the population deviation; a percentile is the first sorted latency at or past its rank.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from petcd.config.govalues import format_go_duration

BAR = "\u220e"  # etcd's histogram bar character
PERCENTILES: tuple[float, ...] = (10, 25, 50, 75, 90, 95, 99, 99.9)
HISTOGRAM_BUCKETS = 10
BAR_WIDTH = 40


def go_g(x: float) -> str:
    """Go's ``%g`` for a float64: the shortest digits that round-trip, exponent when < -4 or >= 6."""
    if x == 0:
        return "0"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    sign, digits, exp = Decimal(repr(x)).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # position of the decimal point relative to the first digit
    point = len(digits) + exp
    e10 = point - 1
    neg = "-" if sign else ""
    if e10 < -4 or e10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return f"{neg}{ds}{'0' * (point - len(ds))}"
    return f"{neg}{ds[:point]}.{ds[point:]}"


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` of a duration given in seconds (ns resolution)."""
    return format_go_duration(round(seconds * 1e9))


@dataclass(frozen=True)
class Sample:
    """One finished request: when it started (unix seconds, for ``--sample``) and how long it took."""

    start_unix: float
    latency: float


@dataclass
class Results:
    """What one worker (or all of them, merged) measured for one kind of request."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)

    def merge(self, other: Results) -> None:
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.samples.extend(other.samples)

    @property
    def count(self) -> int:
        return len(self.latencies) + sum(self.errors.values())


@dataclass(frozen=True)
class Stats:
    total: float
    slowest: float
    fastest: float
    average: float
    stddev: float
    rps: float
    lats: tuple[float, ...]  # sorted


def compute(latencies: Iterable[float], total: float) -> Stats:
    lats = sorted(latencies)
    n = len(lats)
    if n == 0:
        return Stats(total, 0.0, 0.0, 0.0, 0.0, 0.0, ())
    avg = sum(lats) / n
    std = math.sqrt(sum((x - avg) ** 2 for x in lats) / n)
    rps = n / total if total > 0 else 0.0
    return Stats(total, lats[-1], lats[0], avg, std, rps, tuple(lats))


def percentiles(lats: Sequence[float]) -> list[float]:
    """The first latency whose rank (i * 100 / n) reaches each of PERCENTILES; 0 if none does."""
    data = [0.0] * len(PERCENTILES)
    n, j = len(lats), 0
    for i in range(n):
        if j >= len(PERCENTILES):
            break
        if i * 100.0 / n >= PERCENTILES[j]:
            data[j] = lats[i]
            j += 1
    return data


def histogram(stats: Stats) -> list[tuple[float, int]]:
    """Eleven (upper bound, count) pairs: ten equal steps from fastest, the last at slowest."""
    step = (stats.slowest - stats.fastest) / HISTOGRAM_BUCKETS
    bounds = [stats.fastest + step * i for i in range(HISTOGRAM_BUCKETS)] + [stats.slowest]
    counts = [0] * len(bounds)
    b = 0
    for lat in stats.lats:
        while lat > bounds[b] and b < len(bounds) - 1:
            b += 1
        counts[b] += 1
    return list(zip(bounds, counts, strict=True))


class Formatter:
    def __init__(self, precise: bool) -> None:
        self.precise = precise

    def num(self, x: float) -> str:
        return go_g(x) if self.precise else f"{x:4.4f}"

    def secs(self, x: float) -> str:
        return f"{self.num(x)} secs"

    def summary(self, results: Results, total: float, *, sample: bool = False) -> str:
        """etcd's report text: it starts with a blank line and ends with a newline."""
        out = ""
        if results.latencies:
            st = compute(results.latencies, total)
            out += "\nSummary:\n"
            out += f"  Total:\t{self.secs(st.total)}.\n"
            out += f"  Slowest:\t{self.secs(st.slowest)}.\n"
            out += f"  Fastest:\t{self.secs(st.fastest)}.\n"
            out += f"  Average:\t{self.secs(st.average)}.\n"
            out += f"  Stddev:\t{self.secs(st.stddev)}.\n"
            out += f"  Requests/sec:\t{self.num(st.rps)}\n"
            out += "\nResponse time histogram:\n"
            hist = histogram(st)
            top = max(c for _, c in hist)
            for bound, c in hist:
                bar = BAR * (c * BAR_WIDTH // top) if top else ""
                out += f"  {self.num(bound)} [{c}]\t|{bar}\n"
            out += "\nLatency distribution:\n"
            for p, v in zip(PERCENTILES, percentiles(st.lats), strict=True):
                if v > 0:
                    out += f"  {go_g(p)}% in {self.secs(v)}.\n"
            if sample:
                out += time_series(results.samples) + "\n"
        if results.errors:
            out += "\nError distribution:\n"
            for text, n in sorted(results.errors.items(), key=lambda kv: (-kv[1], kv[0])):
                out += f"  [{n}]\t{text}\n"
        return out


def time_series(samples: Iterable[Sample]) -> str:
    """``--sample``: per unix second, min/avg/max latency and the number of requests started."""
    per: dict[int, list[float]] = {}
    for s in samples:
        per.setdefault(int(s.start_unix), []).append(s.latency)
    lines = ["UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT"]
    if per:
        for sec in range(min(per), max(per) + 1):
            lats = per.get(sec, [])
            if lats:
                lo, avg, hi = min(lats), sum(lats) / len(lats), max(lats)
                lines.append(f"{sec},{go_duration(lo)},{go_duration(avg)},{go_duration(hi)},{len(lats)}")
            else:
                lines.append(f"{sec},0s,0s,0s,0")
    return "\nSample in one second (unix latency throughput):\n" + "\n".join(lines) + "\n"
