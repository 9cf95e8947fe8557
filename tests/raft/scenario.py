"""Interpreter for Raft scenario scripts with golden output (tests/raft/testdata/*.txt).

File format (ours): a line ``> command args`` runs a command; the lines after it indented by two
spaces are its expected output; blank lines and ``#`` lines are comments. Rewrite the expected
output of every script with ``PETCD_REWRITE_GOLDEN=1 python -m pytest tests/raft``.

Commands (ids are node ids):
  add-nodes N [voters=1,2,3] [learners=4] [index=K] [pre-vote=b] [check-quorum=b] [read-only=safe|lease]
            [max-inflight=N] [max-size=N] [max-uncommitted=N] [election=N] [heartbeat=N] [forwarding=b]
            N new nodes with the next free ids; index>0 starts them from a snapshot at K holding the
            configuration, otherwise they are bootstrapped with the voters (if any)
  campaign ID | propose ID DATA | propose-conf-change ID add|remove|learner|update NODE
  read-index ID CTX | transfer-leader ID TO | report-unreachable ID PEER | report-snapshot ID PEER ok|failed
  process-ready ID... | deliver-msgs [drop] ID... | stabilize [ID...]
  tick ID N | tick-election ID | tick-heartbeat ID
  partition 1 / 2 3 | isolate ID | heal | restart ID
  raft-log ID | raft-state | status ID | applied ID | compact ID INDEX | snapshot ID
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import (
    ProposalDroppedError,
    RaftError,
    ReadOnlyOption,
    Ready,
    StateType,
    describe_entry,
    describe_message,
)
from petcd.raft.types import describe_conf_state

from .harness import Cluster, encode_state

CC_TYPES = {
    "add": raftpb.ConfChangeAddNode,
    "remove": raftpb.ConfChangeRemoveNode,
    "learner": raftpb.ConfChangeAddLearnerNode,
    "update": raftpb.ConfChangeUpdateNode,
}


def format_ready(id_: int, rd: Ready) -> list[str]:
    out = [f"{id_} ready" + (" (must sync)" if rd.must_sync else "") + ":"]
    if rd.soft_state is not None:
        out.append(f"  soft: lead={rd.soft_state.lead} state={rd.soft_state.raft_state}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        out.append(f"  hard: term={hs.term} vote={hs.vote} commit={hs.commit}")
    if rd.snapshot is not None:
        md = rd.snapshot.metadata
        out.append(f"  snapshot: index={md.index} term={md.term} {describe_conf_state(md.conf_state)}")
    if rd.entries:
        out.append("  entries:")
        out.extend(f"    {describe_entry(e)}" for e in rd.entries)
    if rd.committed_entries:
        out.append("  committed:")
        out.extend(f"    {describe_entry(e)}" for e in rd.committed_entries)
    if rd.messages:
        out.append("  messages:")
        out.extend(f"    {describe_message(m)}" for m in rd.messages)
    for rs in rd.read_states:
        out.append(f"  read state: index={rs.index} ctx={rs.request_ctx!r}")
    return out


def _bool(v: str) -> bool:
    if v not in ("true", "false"):
        raise ValueError(f"expected true/false, got {v!r}")
    return v == "true"


def _ids(v: str) -> list[int]:
    return [int(x) for x in v.split(",") if x]


class Interpreter:
    def __init__(self) -> None:
        self.c = Cluster()
        # Scripts report snapshot outcomes explicitly (report-snapshot).
        self.c.report_snapshots = False
        self.commands: dict[str, Callable[[list[str]], list[str]]] = {
            name.removeprefix("cmd_").replace("_", "-"): getattr(self, name)
            for name in dir(self) if name.startswith("cmd_")
        }

    def run(self, line: str) -> list[str]:
        words = shlex.split(line)
        fn = self.commands.get(words[0])
        if fn is None:
            raise ValueError(f"unknown command {words[0]!r}")
        try:
            return fn(words[1:])
        except RaftError as e:
            return [f"error: {type(e).__name__}: {e}"]

    def node(self, s: str) -> Any:
        return self.c.nodes[int(s)]

    # -- set-up ---------------------------------------------------------------------------------
    def cmd_add_nodes(self, args: list[str]) -> list[str]:
        n = int(args[0])
        opts = dict(a.split("=", 1) for a in args[1:])
        cfg: dict[str, Any] = {"pre_vote": False, "check_quorum": False}
        voters: list[int] = []
        learners: list[int] = []
        index = 0
        for k, v in opts.items():
            if k == "voters":
                voters = _ids(v)
            elif k == "learners":
                learners = _ids(v)
            elif k == "index":
                index = int(v)
            elif k == "pre-vote":
                cfg["pre_vote"] = _bool(v)
            elif k == "check-quorum":
                cfg["check_quorum"] = _bool(v)
            elif k == "read-only":
                cfg["read_only_option"] = ReadOnlyOption.LEASE_BASED if v == "lease" else ReadOnlyOption.SAFE
            elif k == "max-inflight":
                cfg["max_inflight_msgs"] = int(v)
            elif k == "max-size":
                cfg["max_size_per_msg"] = int(v)
            elif k == "max-uncommitted":
                cfg["max_uncommitted_entries_size"] = int(v)
            elif k == "election":
                cfg["election_tick"] = int(v)
            elif k == "heartbeat":
                cfg["heartbeat_tick"] = int(v)
            elif k == "forwarding":
                cfg["disable_proposal_forwarding"] = not _bool(v)
            else:
                raise ValueError(f"unknown option {k}")
        first = max(self.c.nodes, default=0) + 1
        ids = list(range(first, first + n))
        for i in ids:
            self.c.add(i, voters=voters, learners=learners, index=index, **cfg)
        return ["created " + " ".join(str(i) for i in ids)]

    def cmd_restart(self, args: list[str]) -> list[str]:
        n = self.c.restart(int(args[0]))
        r = n.r
        return [f"restarted {n.id}: term={r.term} vote={r.vote} commit={r.raft_log.committed} "
                f"applied={r.raft_log.applied} last={r.raft_log.last_index()}"]

    # -- requests --------------------------------------------------------------------------------
    def cmd_campaign(self, args: list[str]) -> list[str]:
        self.node(args[0]).raw.campaign()
        return []

    def cmd_propose(self, args: list[str]) -> list[str]:
        try:
            self.node(args[0]).raw.propose(args[1].encode())
        except ProposalDroppedError as e:
            return [f"dropped: {type(e).__name__}"]
        return []

    def cmd_propose_conf_change(self, args: list[str]) -> list[str]:
        cc = raftpb.ConfChange(type=CC_TYPES[args[1]], node_id=int(args[2]))
        try:
            self.node(args[0]).raw.propose_conf_change(cc)
        except ProposalDroppedError as e:
            return [f"dropped: {type(e).__name__}"]
        except ValueError as e:
            return [f"refused: {e}"]
        return []

    def cmd_read_index(self, args: list[str]) -> list[str]:
        self.node(args[0]).raw.read_index(args[1].encode())
        return []

    def cmd_transfer_leader(self, args: list[str]) -> list[str]:
        self.node(args[0]).raw.transfer_leader(int(args[1]))
        return []

    def cmd_report_unreachable(self, args: list[str]) -> list[str]:
        self.node(args[0]).raw.report_unreachable(int(args[1]))
        return []

    def cmd_report_snapshot(self, args: list[str]) -> list[str]:
        self.node(args[0]).raw.report_snapshot(int(args[1]), failed=args[2] == "failed")
        return []

    # -- driving ---------------------------------------------------------------------------------
    def cmd_process_ready(self, args: list[str]) -> list[str]:
        out: list[str] = []
        for a in args:
            rd = self.c.process_ready(int(a))
            out.extend(format_ready(int(a), rd) if rd is not None else [f"{a}: no ready"])
        return out

    def cmd_deliver_msgs(self, args: list[str]) -> list[str]:
        drop = bool(args) and args[0] == "drop"
        ids = [int(a) for a in (args[1:] if drop else args)]
        out: list[str] = []
        for i in ids or [None]:
            for m, ok in self.c.deliver(i, drop=drop):
                out.append(("" if ok else "dropped: ") + describe_message(m))
        return out or ["no messages"]

    def cmd_stabilize(self, args: list[str]) -> list[str]:
        ids = [int(a) for a in args] or sorted(self.c.nodes)
        out: list[str] = []
        for _ in range(1000):
            progressed = False
            for i in ids:
                rd = self.c.process_ready(i)
                if rd is not None:
                    out.extend(format_ready(i, rd))
                    progressed = True
            for i in ids:
                if any(m.to == i for m in self.c.queue):
                    out.append(f"{i} receiving:")
                    for m, ok in self.c.deliver(i):
                        out.append("  " + ("" if ok else "dropped: ") + describe_message(m))
                    progressed = True
            if not progressed:
                return out
        raise AssertionError("did not stabilize")

    def cmd_tick(self, args: list[str]) -> list[str]:
        self.c.tick(int(args[0]), int(args[1]))
        return []

    def cmd_tick_election(self, args: list[str]) -> list[str]:
        # Exactly as many ticks as it takes this node's election (or CheckQuorum) timer to fire.
        r = self.node(args[0]).r
        limit = r.election_timeout if r.state == StateType.LEADER else r.randomized_election_timeout
        self.c.tick(int(args[0]), max(1, limit - r.election_elapsed))
        return []

    def cmd_tick_heartbeat(self, args: list[str]) -> list[str]:
        self.c.tick(int(args[0]), self.node(args[0]).r.heartbeat_timeout)
        return []

    def cmd_partition(self, args: list[str]) -> list[str]:
        groups: list[list[int]] = [[]]
        for a in args:
            if a == "/":
                groups.append([])
            else:
                groups[-1].append(int(a))
        return [f"dropped: {describe_message(m)}" for m in self.c.partition(*groups)]

    def cmd_isolate(self, args: list[str]) -> list[str]:
        return [f"dropped: {describe_message(m)}" for m in self.c.isolate(int(args[0]))]

    def cmd_heal(self, args: list[str]) -> list[str]:
        self.c.heal()
        return []

    # -- storage ---------------------------------------------------------------------------------
    def cmd_compact(self, args: list[str]) -> list[str]:
        n = self.node(args[0])
        n.storage.compact(int(args[1]))
        return [f"{n.id}: first index {n.storage.first_index()}"]

    def cmd_snapshot(self, args: list[str]) -> list[str]:
        n = self.node(args[0])
        snap = n.storage.create_snapshot(n.applied_index, n.conf_state, encode_state(n.applied))
        return [f"{n.id}: snapshot at index={snap.metadata.index} term={snap.metadata.term}"]

    # -- inspection ------------------------------------------------------------------------------
    def cmd_raft_log(self, args: list[str]) -> list[str]:
        n = self.node(args[0])
        ents = n.r.raft_log.all_entries()
        if not ents:
            return [f"log is empty: first index={n.r.raft_log.first_index()}, "
                    f"last index={n.r.raft_log.last_index()}"]
        return [describe_entry(e) for e in ents]

    def cmd_raft_state(self, args: list[str]) -> list[str]:
        out = []
        for i in sorted(self.c.nodes):
            r = self.c.nodes[i].r
            role = "Learner" if r.is_learner else ("Voter" if r.id in r.tracker.voters else "Removed")
            out.append(f"{i}: {r.state} ({role}) term={r.term} lead={r.lead} commit={r.raft_log.committed}")
        return out

    def cmd_status(self, args: list[str]) -> list[str]:
        st = self.node(args[0]).raw.status()
        out = [f"{st.id}: {st.raft_state} term={st.hard_state.term} lead={st.lead} "
               f"commit={st.hard_state.commit} applied={st.applied} {describe_conf_state(st.config)}"]
        out.extend(f"  {i}: {p}" for i, p in sorted(st.progress.items()))
        return out

    def cmd_applied(self, args: list[str]) -> list[str]:
        n = self.node(args[0])
        return [f"{n.id}: applied={n.applied_index} data=[" + " ".join(d.decode() for d in n.applied) + "]"]


# -- the file format ---------------------------------------------------------------------------------
def parse(text: str) -> list[tuple[list[str], str, list[str]]]:
    """[(comment lines before the command, command, expected output lines)]."""
    blocks: list[tuple[list[str], str, list[str]]] = []
    comments: list[str] = []
    for raw in text.splitlines():
        if raw.startswith("> "):
            blocks.append((comments, raw[2:], []))
            comments = []
        elif raw.startswith("  ") and blocks and not comments:
            blocks[-1][2].append(raw[2:])
        elif raw.strip() == "" or raw.startswith("#"):
            comments.append(raw)
        else:
            raise ValueError(f"cannot parse line {raw!r}")
    if comments:
        blocks.append((comments, "", []))
    return blocks


def run_script(path: Path) -> tuple[str, str]:
    """Run a script; returns (expected text, actual text) in file form."""
    text = path.read_text()
    interp = Interpreter()
    out: list[str] = []
    for comments, cmd, _expected in parse(text):
        out.extend(comments)
        if not cmd:
            continue
        out.append("> " + cmd)
        out.extend("  " + line for line in interp.run(cmd))
    return text, "\n".join(out) + "\n"
