"""What the leader knows about each follower's log, and the flow control built on it.

A follower's Progress is in one of three states:

* PROBE: the leader does not know where the follower's log ends. It sends one append per
  heartbeat interval (``probe_sent`` pauses further sends) and walks ``next`` back on rejection.
* REPLICATE: the follower is known to match up to ``match``; the leader streams appends
  optimistically (advancing ``next`` on send), bounded by an in-flight window.
* SNAPSHOT: the leader sent a snapshot and waits for it to be applied (or reported failed).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2

    def __str__(self) -> str:
        return ("StateProbe", "StateReplicate", "StateSnapshot")[self]


class Inflights:
    """Last indexes of in-flight appends, oldest first; full at ``size`` messages."""

    __slots__ = ("_q", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def add(self, last_index: int) -> None:
        if len(self._q) >= self.size:
            raise AssertionError("cannot add into a full inflights window")
        self._q.append(last_index)

    def free_le(self, to: int) -> None:
        """Acknowledge every in-flight message ending at or before ``to``."""
        q = self._q
        while q and q[0] <= to:
            q.popleft()

    def free_first_one(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.size

    def reset(self) -> None:
        self._q.clear()

    def copy(self) -> Inflights:
        c = Inflights(self.size)
        c._q.extend(self._q)
        return c


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    # In SNAPSHOT: the index of the snapshot being sent.
    pending_snapshot: int = 0
    # Heard from this peer since the last CheckQuorum round.
    recent_active: bool = False
    # In PROBE: an append was sent and sending pauses until a response or heartbeat response.
    probe_sent: bool = False
    inflights: Inflights = field(default_factory=lambda: Inflights(256))
    is_learner: bool = False

    def __str__(self) -> str:
        s = f"{self.state} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.state == ProgressState.SNAPSHOT:
            s += f" pending_snap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if len(self.inflights):
            s += f" inflight={len(self.inflights)}"
            if self.inflights.full():
                s += "[full]"
        if self.probe_sent:
            s += " paused"
        return s

    def copy(self) -> Progress:
        return Progress(self.match, self.next, self.state, self.pending_snapshot, self.recent_active,
                        self.probe_sent, self.inflights.copy(), self.is_learner)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # After a snapshot, probe from just past it: the follower has at least that much.
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """An append up to ``n`` was acknowledged. True if ``match`` advanced."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def optimistic_update(self, n: int) -> None:
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append at index ``rejected`` was refused; the follower hints its log may match
        at ``match_hint``. False if the rejection is stale (out of order)."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            # Directly go back to just past the known match.
            self.next = self.match + 1
            return True
        # In PROBE, only the rejection of the last probe sent counts.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
