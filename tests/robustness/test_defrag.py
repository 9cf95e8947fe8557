"""Defrag of a 3-member cluster's leader under write load, with an election timeout shorter than
the defrag (issue 11); the full-size run is ``python -m tests.robustness.defrag --mb 200``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.defrag import run


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "the raft driver (petcd/server/raftnode.py _run) awaits apply(rd) before it takes the next Ready, "
    "and EtcdServer._apply_ready waits there for the defrag to unblock writes "
    "(_wait_backend_writable): the leader's heartbeats queue up in raft unsent for the whole defrag, "
    "so the followers elect a new leader"))
def test_defrag_of_the_leader_causes_no_election(tmp_path: Path) -> None:
    result = run(tmp_path, mb=24, heartbeat_ms=50, election_ms=250)
    print(result.summary())
    # the defrag blocked writes for longer than a follower waits for the leader's heartbeats
    assert result.defrag_seconds > 0.25, result.summary()
    assert result.failures() == [], result.summary()
