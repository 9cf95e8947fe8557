"""Safety invariants, checked incrementally as the simulation runs.

The checker sees every persisted write, every applied entry, every Ready's soft state and every
message leaving a node, and keeps a global picture to compare against:

- election safety: `leaders[term]` is the one node ever seen leading that term (from Ready soft
  state and from leader-only messages such as MsgApp / MsgHeartbeat carrying that term), and
  `votes[(voter, term)]` the one candidate a node granted its vote to in that term;
- log matching: `log_pairs[(index, term)]` is the (type, data, previous term) that any persisted
  log has at that position; if every (index, term) always maps to the same content and the same
  previous term, two logs agreeing at (index, term) agree on the whole prefix (by induction);
- committed entries are never lost or changed: `committed[index]` is the entry first seen
  committed (a node's persisted commit index covering it, or a node applying it); every later
  sighting must match, a node may never overwrite an entry at or below its own persisted commit,
  and a new leader's log must hold every entry committed in an earlier term (leader completeness);
- state machine safety: `chain[index]` is the hash of the applied sequence up to index; every
  node applying index, or restoring a snapshot at it, must reach the same hash;
- ReadIndex: a read state's index is at least the highest commit index persisted anywhere when
  the read was requested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from petcd.proto.raftpb import raft_pb2 as raftpb

from .disk import Disk

# Messages only a leader sends: seeing one with term T from node N means N led term T.
LEADER_ONLY = frozenset({raftpb.MsgApp, raftpb.MsgSnap, raftpb.MsgHeartbeat, raftpb.MsgTimeoutNow})


class InvariantViolation(AssertionError):
    pass


def entry_key(e: raftpb.Entry) -> tuple[int, bytes]:
    return (int(e.type), bytes(e.data))


@dataclass
class Checker:
    leaders: dict[int, int] = field(default_factory=dict)
    votes: dict[tuple[int, int], int] = field(default_factory=dict)  # (voter, term) -> candidate
    log_pairs: dict[tuple[int, int], tuple[int, bytes, int]] = field(default_factory=dict)
    committed: dict[int, tuple[int, tuple[int, bytes]]] = field(default_factory=dict)  # idx -> (term, key)
    committed_seen_term: dict[int, int] = field(default_factory=dict)  # idx -> lowest term it was seen at
    chain: dict[int, bytes] = field(default_factory=dict)
    max_commit: int = 0
    read_floor: dict[bytes, int] = field(default_factory=dict)
    reads_served: int = 0
    # entry payloads the simulation waits for (liveness markers) -> index they were committed at
    watch: set[bytes] = field(default_factory=set)
    watch_hits: dict[bytes, int] = field(default_factory=dict)
    # per node, what its disk said last time (term/vote/commit) to check monotonicity
    disk_term: dict[int, int] = field(default_factory=dict)
    disk_vote: dict[int, int] = field(default_factory=dict)
    disk_commit: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def fail(msg: str) -> None:
        raise InvariantViolation(msg)

    # --- election safety -------------------------------------------------------------------
    def on_leader(self, node: int, term: int) -> None:
        if term == 0:
            return
        prev = self.leaders.setdefault(term, node)
        if prev != node:
            self.fail(f"election safety: term {term} has two leaders, {prev} and {node}")

    def on_message(self, m: raftpb.Message) -> None:
        if m.type in LEADER_ONLY:
            self.on_leader(getattr(m, "from"), m.term)
        elif m.type == raftpb.MsgVoteResp and not m.reject:
            # a granted (real, not pre-) vote: one candidate per voter per term
            voter = getattr(m, "from")
            prev = self.votes.setdefault((voter, m.term), m.to)
            if prev != m.to:
                self.fail(f"node {voter} granted its term-{m.term} vote to both {prev} and {m.to}")

    # --- persisted log ---------------------------------------------------------------------
    def on_append(self, node: int, disk: Disk, entries: list[raftpb.Entry], overwritten: int) -> None:
        commit = self.disk_commit.get(node, 0)
        if overwritten and overwritten <= commit:
            self.fail(f"node {node} overwrote entry {overwritten} at or below its persisted commit {commit}")
        for e in entries:
            if e.index <= disk.snap_index():
                continue
            prev = disk.term(e.index - 1)
            if prev is None:
                self.fail(f"node {node}: entry {e.index} appended after a hole")
            assert prev is not None
            t, data = entry_key(e)
            got = self.log_pairs.setdefault((e.index, e.term), (t, data, prev))
            if got != (t, data, prev):
                self.fail(
                    f"log matching: node {node} has ({e.index}, term {e.term}) with content/prev term "
                    f"{(t, data[:40], prev)}, another log has {(got[0], got[1][:40], got[2])}"
                )

    def on_hard_state(self, node: int, disk: Disk, observer_term: int) -> None:
        hs = disk.hard_state
        old_term = self.disk_term.get(node, 0)
        if hs.term < old_term:
            self.fail(f"node {node}: persisted term went back from {old_term} to {hs.term}")
        if hs.term == old_term and self.disk_vote.get(node, 0) not in (0, hs.vote):
            self.fail(f"node {node}: voted twice in term {hs.term} ({self.disk_vote[node]} then {hs.vote})")
        old_commit = self.disk_commit.get(node, 0)
        if hs.commit < old_commit:
            self.fail(f"node {node}: persisted commit went back from {old_commit} to {hs.commit}")
        if hs.commit > disk.last_index():
            self.fail(f"node {node}: persisted commit {hs.commit} beyond its persisted log {disk.last_index()}")
        self.disk_term[node], self.disk_vote[node] = hs.term, hs.vote
        for i in range(max(old_commit, disk.snap_index()) + 1, hs.commit + 1):
            e = disk.entry(i)
            assert e is not None
            self.on_committed(node, e, observer_term)
        if disk.snap_index() and disk.snap_index() <= hs.commit:
            self.check_committed_term(node, disk.snap_index(), disk.snap_term())
        self.disk_commit[node] = hs.commit
        self.max_commit = max(self.max_commit, hs.commit)

    def on_committed(self, node: int, e: raftpb.Entry, observer_term: int) -> None:
        key = entry_key(e)
        got = self.committed.setdefault(e.index, (e.term, key))
        if key[1] in self.watch:
            self.watch_hits.setdefault(key[1], e.index)
        if got != (e.term, key):
            self.fail(
                f"committed entry changed: index {e.index} committed as (term {got[0]}, {got[1][1][:40]!r}), "
                f"node {node} has (term {e.term}, {key[1][:40]!r})"
            )
        seen = self.committed_seen_term.get(e.index)
        if seen is None or observer_term < seen:
            self.committed_seen_term[e.index] = observer_term

    def on_snapshot_install(self, node: int, index: int, term: int) -> None:
        """A snapshot replaces the whole log: it must not end before what the node committed."""
        commit = self.disk_commit.get(node, 0)
        if index < commit:
            self.fail(f"node {node} installed a snapshot at {index} below its persisted commit {commit}")
        self.check_committed_term(node, index, term)

    def check_committed_term(self, node: int, index: int, term: int) -> None:
        got = self.committed.get(index)
        if got is not None and got[0] != term:
            self.fail(f"node {node}: snapshot at {index} has term {term}, committed entry has term {got[0]}")

    def check_leader_completeness(self, node: int, term: int, disk: Disk) -> None:
        """A leader of `term` must hold every entry committed in an earlier term."""
        for i, seen in self.committed_seen_term.items():
            if seen >= term or i <= disk.snap_index():
                continue
            e = disk.entry(i)
            want = self.committed[i]
            if e is None or (e.term, entry_key(e)) != want:
                self.fail(
                    f"leader completeness: node {node} leads term {term} without committed entry {i} "
                    f"(term {want[0]}, committed by term {seen}); it has "
                    f"{'nothing' if e is None else f'term {e.term}'}"
                )

    # --- state machine ---------------------------------------------------------------------
    def on_apply(self, node: int, e: raftpb.Entry, chain: bytes, observer_term: int) -> None:
        self.on_committed(node, e, observer_term)
        self.check_chain(node, e.index, chain)

    def check_chain(self, node: int, index: int, chain: bytes) -> None:
        got = self.chain.setdefault(index, chain)
        if got != chain:
            self.fail(f"state machine safety: node {node} applied a different sequence up to index {index}")

    # --- ReadIndex -------------------------------------------------------------------------
    def on_read_request(self, ctx: bytes) -> None:
        self.read_floor[ctx] = self.max_commit

    def on_read_state(self, node: int, index: int, ctx: bytes) -> None:
        floor = self.read_floor.get(ctx)
        if floor is None:
            self.fail(f"node {node}: read state for unknown request {ctx!r}")
        assert floor is not None
        if index < floor:
            self.fail(f"read index: node {node} answered {ctx!r} with index {index} < commit {floor} at request")
        self.reads_served += 1
