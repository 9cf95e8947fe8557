"""Membership changes on a real 3-member petcd under concurrent clients and watchers: a learner
added, caught up and promoted, a member removed, one replaced by a fresh member on new ports
(tests/robustness/membership.py; more runs: ``python -m tests.robustness --scenario membership``)."""

from __future__ import annotations

from pathlib import Path

from tests.robustness.membership import run_membership
from tests.robustness.suite import RunConfig


def test_add_promote_remove_replace_under_load(tmp_path: Path) -> None:
    result = run_membership(tmp_path, RunConfig(11, "membership", duration=4.0))
    print(result.summary())
    assert result.ok, result.summary()
    assert int(result.stats["ops"]) > 100 and int(result.stats["probe_acked"]) > 20, result.summary()  # type: ignore[call-overload]
    # the learner (m4) and the replacement (m5) are members at the end; two of the first three are gone
    members = result.stats["members"]
    assert isinstance(members, list) and len(members) == 3 and {"m4", "m5"} <= set(members), result.summary()
