"""The leader's view of the cluster: the configuration, every member's Progress, and votes.

Configuration changes are applied one at a time (no joint consensus): each change adds, removes,
promotes or demotes a single member, so any majority of the old voter set overlaps any majority
of the new one. Only voters count for elections, commitment and CheckQuorum; learners only
receive the log.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping

from petcd.proto.raftpb import raft_pb2 as raftpb

from .progress import Inflights, Progress


class VoteResult(enum.Enum):
    PENDING = 0
    LOST = 1
    WON = 2


def majority_committed(voters: frozenset[int] | set[int], progress: Mapping[int, Progress]) -> int:
    """The largest index acknowledged by a majority of ``voters`` (by their Progress.match; 0 for
    no voters). Reads the progress map directly: this runs once per proposal."""
    n = len(voters)
    if n == 1:
        for v in voters:
            pr = progress.get(v)
            return pr.match if pr is not None else 0
    if n == 0:
        return 0
    srt = sorted([progress[v].match if v in progress else 0 for v in voters], reverse=True)
    return srt[n // 2]


def majority_vote(voters: frozenset[int] | set[int], votes: Mapping[int, bool]) -> VoteResult:
    n = len(voters)
    if n == 0:
        # Nothing to wait for (mirrors an empty configuration "winning" trivially).
        return VoteResult.WON
    granted = rejected = 0
    for v in voters:
        r = votes.get(v)
        if r is True:
            granted += 1
        elif r is False:
            rejected += 1
    q = n // 2 + 1
    if granted >= q:
        return VoteResult.WON
    if n - rejected >= q:
        return VoteResult.PENDING
    return VoteResult.LOST


class ConfChangeError(ValueError):
    """A configuration change that cannot be applied (e.g. it would remove the last voter)."""


class ProgressTracker:
    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}

    def conf_state(self) -> raftpb.ConfState:
        return raftpb.ConfState(voters=sorted(self.voters), learners=sorted(self.learners))

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def items(self) -> Iterator[tuple[int, Progress]]:
        """Members in id order (deterministic message order)."""
        for id_ in sorted(self.progress):
            yield id_, self.progress[id_]

    def committed(self) -> int:
        return majority_committed(self.voters, self.progress)

    def quorum_active(self) -> bool:
        votes = {i: p.recent_active for i, p in self.progress.items() if not p.is_learner}
        return majority_vote(self.voters, votes) == VoteResult.WON

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, id_: int, granted: bool) -> None:
        self.votes.setdefault(id_, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for i, v in self.votes.items() if v and i in self.voters)
        rejected = sum(1 for i, v in self.votes.items() if not v and i in self.voters)
        return granted, rejected, majority_vote(self.voters, self.votes)

    # -- configuration changes ---------------------------------------------------
    def _init_progress(self, id_: int, is_learner: bool, last_index: int) -> None:
        # Probe the new member from our last index; it backs off from there. Treat it as active
        # so a CheckQuorum right after adding it does not count it against us.
        self.progress[id_] = Progress(match=0, next=max(last_index, 1), recent_active=True,
                                      inflights=Inflights(self.max_inflight), is_learner=is_learner)

    def check_change(self, cc: raftpb.ConfChange) -> None:
        """Raise ConfChangeError if ``cc`` cannot be applied to the current configuration."""
        if cc.node_id == 0:
            if cc.type == raftpb.ConfChangeUpdateNode:
                return
            raise ConfChangeError("conf change for node id 0")
        voters = set(self.voters)
        if cc.type == raftpb.ConfChangeRemoveNode or cc.type == raftpb.ConfChangeAddLearnerNode:
            voters.discard(cc.node_id)
        elif cc.type == raftpb.ConfChangeAddNode:
            voters.add(cc.node_id)
        if not voters:
            raise ConfChangeError("conf change would remove all voters")

    def apply_change(self, cc: raftpb.ConfChange, last_index: int) -> None:
        self.check_change(cc)
        nid = cc.node_id
        pr = self.progress.get(nid)
        if cc.type == raftpb.ConfChangeAddNode:
            if pr is None:
                self._init_progress(nid, False, last_index)
            else:
                pr.is_learner = False  # promotion (or a repeat of an add)
            self.learners.discard(nid)
            self.voters.add(nid)
        elif cc.type == raftpb.ConfChangeAddLearnerNode:
            if pr is None:
                self._init_progress(nid, True, last_index)
            else:
                pr.is_learner = True  # demotion of a voter (or a repeat)
            self.voters.discard(nid)
            self.learners.add(nid)
        elif cc.type == raftpb.ConfChangeRemoveNode:
            self.voters.discard(nid)
            self.learners.discard(nid)
            self.progress.pop(nid, None)
            self.votes.pop(nid, None)
        # ConfChangeUpdateNode only concerns the application.

    def restore(self, cs: raftpb.ConfState, last_index: int) -> None:
        """Reset to exactly the configuration ``cs`` (after a snapshot, or at start-up)."""
        self.voters = set()
        self.learners = set()
        self.progress = {}
        self.votes = {}
        for v in cs.voters:
            self._init_progress(v, False, last_index)
            self.voters.add(v)
        for v in cs.learners:
            if v in self.voters:
                raise ConfChangeError(f"node {v} is both voter and learner in {cs}")
            self._init_progress(v, True, last_index)
            self.learners.add(v)
