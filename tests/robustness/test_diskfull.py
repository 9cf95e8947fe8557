"""A member whose data dir (a small tmpfs in a private mount namespace) fills up under load
(tests/robustness/diskfull.py; more runs: ``python -m tests.robustness --scenario disk-full``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.diskfull import run_diskfull, why_not
from tests.robustness.suite import RunConfig

WHY_NOT = why_not()


@pytest.mark.skipif(WHY_NOT is not None, reason=f"disk-full scenario: {WHY_NOT}")
def test_member_with_a_full_disk_stops_and_recovers(tmp_path: Path) -> None:
    result = run_diskfull(tmp_path, RunConfig(11, "disk-full", duration=4.0))
    print(result.summary())
    assert result.ok, result.summary()
    # it stopped as etcd's member does on a failed write, not with a signal, and was restarted
    assert result.stats.get("full_member_exit") not in (None, 0), result.summary()
    assert int(result.stats["ops"]) > 100, result.summary()  # type: ignore[call-overload]
