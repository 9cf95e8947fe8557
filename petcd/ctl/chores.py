"""The notebook's multi-step chores as single commands, each printing its steps.

- ``recover nospace``: health, compact to the current revision, defragment every member one at a
  time (leader last, each healthy again before the next), disarm, verify a write.
- ``defrag --cluster --safe``: the same order and checks, and only members that are fragmented:
  ``dbSize - dbSizeInUse >= --min-free`` (100 MiB) or, with at least 1 MiB free, a free share of
  ``dbSize`` of ``--min-free-ratio`` (0.5) or more. (ahrtr/etcd-defrag, checked on its README:
  its ``--defrag-rule`` defaults to empty, which defragments every member; its example rule is
  ``dbSize > dbQuota*80/100 || dbSize - dbSizeInUse > 200*1024*1024``. The quota is not readable
  over the API, so petcdctl's rule uses only the two sizes a Status answer gives; like etcd-defrag,
  its health check ignores the NOSPACE alarm.)
- ``member replace NAME --peer-urls=...``: remove and re-add a member, print its start command;
  refused when the cluster would lose quorum.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from petcd.ctl.base import Env
from petcd.ctl.cli import EXIT_BAD_ARGS, EXIT_CLUSTER_NOT_HEALTHY, EXIT_ERROR, Command, CtlExit, Runner
from petcd.ctl.client import Client, RpcFailure
from petcd.ctl.printer import out
from petcd.proto.etcdserverpb import rpc_pb2 as pb

HEALTH_WAIT = 30.0  # seconds a defragmented member gets to answer again
MIB = 1024 * 1024
VERIFY_KEY = b"petcdctl/recover-nospace/verify"


@dataclass
class MemberState:
    member: Any  # pb.Member
    endpoint: str
    status: Any | None  # pb.StatusResponse, None when it does not answer
    error: str = ""

    @property
    def healthy(self) -> bool:
        return self.status is not None

    @property
    def is_leader(self) -> bool:
        return self.status is not None and self.status.leader == self.status.header.member_id

    @property
    def free(self) -> int:
        return 0 if self.status is None else self.status.dbSize - self.status.dbSizeInUse


def step(text: str) -> None:
    out(text + "\n")
    import sys

    sys.stdout.flush()


def survey(c: Client, timeout: float, linearizable: bool = True) -> list[MemberState]:
    """Every member with its first client URL and its status (None if it does not answer). Without
    quorum only a serializable member list answers: a refusal must still be able to explain itself."""
    states = []
    try:
        members = c.member_list(linearizable).members
    except RpcFailure as exc:
        raise CtlExit(EXIT_CLUSTER_NOT_HEALTHY, f"cannot list the members ({exc}); nothing changed") from None
    for m in members:
        if not m.clientURLs:
            states.append(MemberState(m, "", None, "not started (no client URL)"))
            continue
        ep = m.clientURLs[0]
        try:
            states.append(MemberState(m, ep, c.status(ep, timeout=timeout)))
        except RpcFailure as exc:
            states.append(MemberState(m, ep, None, str(exc)))
    return states


def _label(s: MemberState) -> str:
    return f"{s.member.name or '(unstarted)'} {s.member.ID:x} {s.endpoint}"


def wait_healthy(c: Client, ep: str, timeout: float = HEALTH_WAIT) -> Any:
    """Status answers and a serializable read works on ep (alarms do not count here)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            st = c.status(ep, timeout=2.0)
            c.unary("KV", "Range", pb.RangeRequest(key=b"health", serializable=True), endpoint=ep, timeout=2.0)
            if st.leader:
                return st
            last = "no leader"
        except RpcFailure as exc:
            last = str(exc)
        time.sleep(0.2)
    raise CtlExit(EXIT_CLUSTER_NOT_HEALTHY, f"{ep} not healthy after {timeout:.0f}s ({last}); stopping here")


def require_all_healthy(states: list[MemberState]) -> None:
    for s in states:
        step(f"  {_label(s)}: " + (f"ok, dbSize {s.status.dbSize}, dbSizeInUse {s.status.dbSizeInUse}"
                                   + (", leader" if s.is_leader else "") if s.status else f"UNHEALTHY ({s.error})"))
    bad = [s for s in states if not s.healthy]
    if bad:
        raise CtlExit(EXIT_CLUSTER_NOT_HEALTHY,
                      f"{len(bad)} member(s) not healthy: {', '.join(_label(s) for s in bad)}; nothing changed "
                      "(defragmenting now could leave the cluster without quorum)")


def defrag_in_order(c: Client, states: list[MemberState], pick: Callable[[MemberState], bool]) -> int:
    """Defragment the picked members one at a time, followers first and the leader last."""
    done = 0
    for s in sorted(states, key=lambda s: s.is_leader):
        if not pick(s):
            step(f"  skip {_label(s)}: {s.free} bytes free of {s.status.dbSize if s.status else 0} (not fragmented)")
            continue
        step(f"  defragment {_label(s)}{' (leader, last)' if s.is_leader else ''} ...")
        start = time.monotonic()
        try:
            c.unary("Maintenance", "Defragment", pb.DefragmentRequest(), endpoint=s.endpoint, timeout=300.0)
        except RpcFailure as exc:
            raise CtlExit(EXIT_ERROR, f"defragmenting {_label(s)} failed: {exc}; stopping here") from None
        took = time.monotonic() - start
        st = wait_healthy(c, s.endpoint)
        step(f"  Finished defragmenting etcd member[{s.endpoint}] in {took:.3f}s: dbSize {st.dbSize}, "
             f"dbSizeInUse {st.dbSizeInUse}; healthy again")
        done += 1
    return done


# --- recover nospace ------------------------------------------------------------------------------
def recover_nospace(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "recover nospace takes no arguments")
    timeout = env.inv.seconds("command-timeout")
    with env.client() as c:
        step("[1/5] health of every member")
        states = survey(c, timeout)
        require_all_healthy(states)
        alarms = c.unary("Maintenance", "Alarm", pb.AlarmRequest(action=pb.AlarmRequest.GET)).alarms
        names = {1: "NOSPACE", 2: "CORRUPT"}
        step("  alarms: " + (", ".join(f"{names.get(a.alarm, a.alarm)} on {a.memberID:x}" for a in alarms) or "none"))
        if any(a.alarm == pb.CORRUPT for a in alarms):
            raise CtlExit(EXIT_ERROR, "a CORRUPT alarm is active: that is not a space problem; nothing changed")
        leader = next((s for s in states if s.is_leader), states[0])
        rev = c.unary("KV", "Range", pb.RangeRequest(key=b"health"), endpoint=leader.endpoint).header.revision
        step(f"[2/5] compact to the current revision {rev}")
        try:
            c.unary("KV", "Compact", pb.CompactionRequest(revision=rev, physical=True), timeout=120.0)
            step(f"  compacted revision {rev}")
        except RpcFailure as exc:
            if "required revision has been compacted" not in str(exc):
                raise CtlExit(EXIT_ERROR, f"compaction failed: {exc}") from None
            step(f"  revision {rev} was already compacted")
        step("[3/5] defragment every member, one at a time, leader last")
        defrag_in_order(c, survey(c, timeout), lambda s: True)
        step("[4/5] disarm alarms")
        from petcd.ctl.maint import disarm_all

        disarmed = disarm_all(c).alarms
        step("  " + (", ".join(f"disarmed {names.get(a.alarm, a.alarm)} on {a.memberID:x}" for a in disarmed)
                     or "no alarm was active"))
        step("[5/5] verify a write")
        try:
            put = c.unary("KV", "Put", pb.PutRequest(key=VERIFY_KEY, value=b"ok"))
            c.unary("KV", "DeleteRange", pb.DeleteRangeRequest(key=VERIFY_KEY))
        except RpcFailure as exc:
            raise CtlExit(EXIT_ERROR, f"a write still fails: {exc}") from None
        step(f"  wrote and deleted {VERIFY_KEY.decode()} at revision {put.header.revision}: writes work")
    step("recovered")
    return 0


# --- defrag --cluster --safe ------------------------------------------------------------------------
def fragmented(s: MemberState, min_free: int, ratio: float) -> bool:
    if s.status is None or s.status.dbSize <= 0:
        return False
    free = s.free
    return free >= min_free or (free >= MIB and free / s.status.dbSize >= ratio)


def safe_defrag(env: Env) -> int:
    if not env.inv.bool("cluster"):
        raise CtlExit(EXIT_BAD_ARGS, "--safe needs --cluster: it orders the members of the whole cluster")
    min_free = env.inv.int("min-free")
    try:
        ratio = float(env.inv.text("min-free-ratio"))
    except ValueError:
        raise CtlExit(EXIT_BAD_ARGS, f"bad --min-free-ratio {env.inv.text('min-free-ratio')!r}") from None
    if min_free < 0 or not 0 <= ratio <= 1:
        raise CtlExit(EXIT_BAD_ARGS, "--min-free must be >= 0 and --min-free-ratio within [0, 1]")
    with env.client() as c:
        step("[1/2] health of every member")
        states = survey(c, env.inv.seconds("command-timeout"))
        require_all_healthy(states)
        step(f"[2/2] defragment fragmented members (free >= {min_free} bytes, or >= 1 MiB free and "
             f"free/dbSize >= {ratio}), leader last")
        done = defrag_in_order(c, states, lambda s: fragmented(s, min_free, ratio))
    step(f"defragmented {done} of {len(states)} members")
    return 0


# --- member replace -------------------------------------------------------------------------------
def member_replace(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "member replace needs the member's name (or hex ID) as its argument")
    target_name = env.args[0]
    peer_urls = env.inv.text("peer-urls")
    if not peer_urls:
        raise CtlExit(EXIT_BAD_ARGS, "member peer urls not provided (--peer-urls)")
    with env.client() as c:
        states = survey(c, env.inv.seconds("command-timeout"), linearizable=False)
        match = [s for s in states if s.member.name == target_name or f"{s.member.ID:x}" == target_name]
        if not match:
            raise CtlExit(EXIT_ERROR, f"no member named {target_name!r} (members: "
                          f"{', '.join(s.member.name or f'{s.member.ID:x}' for s in states)})")
        target = match[0]
        others = [s for s in states if s is not target]
        voters = [s for s in states if not s.member.isLearner]
        healthy_others = [s for s in others if s.healthy and not s.member.isLearner]
        quorum = len(voters) // 2 + 1
        step(f"member {_label(target)}: {'healthy' if target.healthy else 'not answering (' + target.error + ')'}")
        step(f"other voting members healthy: {len(healthy_others)} of {len(voters) - 1} (quorum of "
             f"{len(voters)} is {quorum})")
        if len(healthy_others) < quorum:
            raise CtlExit(EXIT_CLUSTER_NOT_HEALTHY,
                          f"refusing: with {target_name} removed and its replacement not yet started, only "
                          f"{len(healthy_others)} healthy voting members would remain and {quorum} are needed; "
                          "nothing changed. Bring the other members back first.")
        if target.healthy and not env.inv.bool("force"):
            raise CtlExit(EXIT_ERROR, f"refusing: {target_name} is healthy and serving; replace a healthy member "
                          "only on purpose (--force). Nothing changed.")
        client_urls = env.inv.text("client-urls") or ",".join(target.member.clientURLs)
        via = healthy_others[0].endpoint
        removed = c.unary("Cluster", "MemberRemove", pb.MemberRemoveRequest(ID=target.member.ID), endpoint=via)
        out(f"Member {target.member.ID:16x} removed from cluster {removed.header.cluster_id:16x}\n")
        added = None
        deadline = time.monotonic() + 30.0
        while added is None:
            try:
                added = c.unary("Cluster", "MemberAdd", pb.MemberAddRequest(peerURLs=peer_urls.split(",")),
                                endpoint=via)
            except RpcFailure as exc:
                # right after a removal the leader may still count the old member; retry a while
                if time.monotonic() > deadline or ("unhealthy" not in str(exc) and "not enough" not in str(exc)):
                    raise CtlExit(EXIT_ERROR, f"{target_name} was removed but adding its replacement failed: {exc}; "
                                  f"run: petcdctl member add {target_name} --peer-urls={peer_urls}") from None
                time.sleep(0.5)
    from petcd.ctl.maint import initial_cluster, member_env

    out(f"Member {added.member.ID:16x} added to cluster {added.header.cluster_id:16x}\n\n")
    out(member_env(target_name, peer_urls, added))
    data_dir = env.inv.text("data-dir") or f"/var/lib/petcd/{target_name}"
    first_peer = peer_urls.split(",")[0]
    listen_peer = ",".join(peer_urls.split(","))
    cmd = ["petcd", "--name", target_name, "--data-dir", data_dir,
           "--initial-advertise-peer-urls", peer_urls, "--listen-peer-urls", listen_peer,
           "--listen-client-urls", client_urls, "--advertise-client-urls", client_urls,
           "--initial-cluster", initial_cluster(target_name, added.member.ID, added.members),
           "--initial-cluster-state", "existing"]
    out(f"\nStart the new member on an EMPTY data directory (wipe the old member's first; it "
        f"joins through {first_peer}):\n")
    out(shlex.join(cmd) + "\n")
    return 0


def _r(fn: Callable[[Env], int]) -> Runner:
    return lambda inv: fn(Env(inv))


def commands() -> list[Command]:
    from petcd.ctl.check import commands as check_commands

    recover = Command("recover <subcommand>", "[petcdctl] Recovers a cluster from a known bad state").add(
        Command("nospace", "Compacts, defragments every member (leader last), disarms NOSPACE, verifies a write",
                _r(recover_nospace)),
    )
    return [recover, *check_commands()]
