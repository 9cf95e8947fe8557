"""Helpers for tests that drive a single Raft object directly with hand-made messages."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import Config, MemoryStorage, new_message
from petcd.raft.raft import Raft

MT = raftpb


def storage(peers: Sequence[int] = (), learners: Sequence[int] = (),
            log: Sequence[tuple[int, int]] = (), hs: raftpb.HardState | None = None) -> MemoryStorage:
    """A storage holding ``log`` ((index, term) pairs from index 1) and a configuration.

    The configuration lives in the (empty, index 0) snapshot's metadata, which MemoryStorage
    offers no setter for; tests reach into the returned snapshot object directly.
    """
    s = MemoryStorage()
    cs = s.snapshot().metadata.conf_state
    cs.voters.extend(peers)
    cs.learners.extend(learners)
    s.append([raftpb.Entry(index=i, term=t) for i, t in log])
    if hs is not None:
        s.set_hard_state(hs)
    return s


def raft(id_: int, peers: Sequence[int] = (1, 2, 3), election: int = 10, heartbeat: int = 1,
         st: MemoryStorage | None = None, **kw: Any) -> Raft:
    kw.setdefault("pre_vote", False)
    kw.setdefault("check_quorum", False)
    kw.setdefault("rand", random.Random(id_))
    if st is None:
        st = storage(peers)
    return Raft(Config(id=id_, election_tick=election, heartbeat_tick=heartbeat, storage=st, **kw))


def take(r: Raft) -> list[raftpb.Message]:
    r.flush()
    m = r.msgs
    r.msgs = []
    return m


def msg(t: raftpb.MessageType, frm: int, to: int, term: int = 0, **kw: Any) -> raftpb.Message:
    return new_message(t, to=to, frm=frm, term=term, **kw)


def entries(*pairs: tuple[int, int]) -> list[raftpb.Entry]:
    return [raftpb.Entry(index=i, term=t) for i, t in pairs]


def log_pairs(r: Raft) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in r.raft_log.all_entries()]


def make_leader(r: Raft) -> None:
    """Turn ``r`` into the leader of the next term without a real election."""
    r.become_candidate()
    r.become_leader()
    take(r)


def persist(r: Raft, st: MemoryStorage) -> None:
    """Persist the unstable tail (what a driver does with a Ready's entries)."""
    ents = r.raft_log.unstable_entries()
    if ents:
        st.append(ents)
        r.raft_log.stable_to(ents[-1].index, ents[-1].term)
