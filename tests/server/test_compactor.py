"""Auto-compaction decisions, driven by a fake clock."""

from __future__ import annotations

import itertools

from petcd.server.compactor import HOUR, PeriodicCompactor, RevisionCompactor, make_compactor


def run(c: PeriodicCompactor | RevisionCompactor, seconds: float, rev_at: dict[float, int] | None = None,
        rate: int = 10) -> list[tuple[float, int]]:
    """Observe every interval for `seconds`, revision growing by `rate` per second."""
    out = []
    t = 0.0
    while t <= seconds:
        t += c.interval
        target = c.observe(t, int(t * rate))
        if target is not None:
            out.append((t, target))
    return out


def test_periodic_short_period_compacts_every_period_keeping_a_period() -> None:
    c = PeriodicCompactor(period=600.0, start=0.0)
    assert c.interval == 60.0
    done = run(c, 3000)
    times = [t for t, _ in done]
    # the first sample is one interval after start, so the first compaction comes a period after it
    assert times[0] == 660.0
    assert [b - a for a, b in itertools.pairwise(times)] == [600.0] * (len(times) - 1)
    assert len(times) == 5
    for t, target in done:
        assert target <= (t - 600) * 10, "compacted history younger than the retention"
        assert target >= (t - 600 - c.interval) * 10


def test_periodic_long_period_compacts_hourly_keeping_the_period() -> None:
    c = PeriodicCompactor(period=12 * HOUR, start=0.0)
    assert c.interval == 360.0  # samples every 6 minutes
    done = run(c, 15 * HOUR)
    assert done, "never compacted"
    first_t, first_rev = done[0]
    assert first_t >= 12 * HOUR
    assert first_rev <= (first_t - 12 * HOUR) * 10
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(done)]
    assert all(g == HOUR for g in gaps)


def test_revision_mode_keeps_retention_revisions() -> None:
    c = RevisionCompactor(retention=1000, start=0.0)
    assert c.observe(300, 500) is None
    assert c.observe(600, 1500) == 500
    assert c.observe(900, 1500) is None  # nothing new since
    assert c.observe(1200, 2600) == 1600


def test_make_compactor_modes() -> None:
    assert make_compactor("periodic", 0, 0.0) is None
    assert isinstance(make_compactor("periodic", int(HOUR * 1e9), 0.0), PeriodicCompactor)
    assert isinstance(make_compactor("revision", 1000, 0.0), RevisionCompactor)
