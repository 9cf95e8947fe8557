"""Membership changes under load (issue 11): add a member as a learner, wait for it to catch up
and promote it; remove a member; replace one (remove it, add a fresh member on new ports that
joins with ``--initial-cluster-state=existing``). Each change is retried as an operator would
while etcd's strict reconfig check refuses it (``etcdserver: unhealthy cluster`` until the peers
have been connected for 5 s; a promotion before the learner is in sync). Checked by
``dynamic.run``; a removed member must also stop serving and exit, as etcd's does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import LOOPBACK, Server, free_ports
from tests.robustness.cluster import followers_of, leader_of, status
from tests.robustness.dynamic import Fault, Live, run
from tests.robustness.suite import RunConfig, RunResult, _member_args

T = TypeVar("T")
RETRY_FOR = 30.0


def start(live: Live) -> list[Server]:
    return live.group.start_cluster("petcd", 3, extra_args=_member_args(live.cfg))


def _retry(live: Live, what: str, call: Callable[[], T]) -> T:
    """``call`` until it succeeds; every refusal is noted (etcd answers some with a reason to wait)."""
    end = time.monotonic() + RETRY_FOR
    refusals: dict[str, int] = {}
    while True:
        try:
            out = call()
            if refusals:
                live.note(f"{what}: refused first {refusals}")
            return out
        except grpc.RpcError as exc:
            text = f"{exc.code().name}: {exc.details()}"
            refusals[text] = refusals.get(text, 0) + 1
            if time.monotonic() > end:
                raise AssertionError(f"{what}: still refused after {RETRY_FOR:.0f}s: {refusals}") from exc
            time.sleep(0.3)


def _cluster(m: Server) -> tuple[grpc.Channel, pb_grpc.ClusterStub]:
    ch = grpc.insecure_channel(m.endpoint)
    return ch, pb_grpc.ClusterStub(ch)  # type: ignore[no-untyped-call]


def _running(live: Live) -> list[Server]:
    return [m for m in live.members if m.is_running()]


def _add(live: Live, name: str, learner: bool) -> tuple[Server, int]:
    via = live.rnd.choice(_running(live))
    client_port, peer_port = free_ports(2)
    peer_url = f"http://{LOOPBACK}:{peer_port}"
    ch, cl = _cluster(via)
    with ch:
        resp = _retry(live, f"member add {name} via {via.name}", lambda: cl.MemberAdd(
            pb.MemberAddRequest(peerURLs=[peer_url], isLearner=learner), timeout=5))
    live.note(f"added {name} ({'learner' if learner else 'voter'}, id {resp.member.ID:x}) via {via.name}")
    initial = ",".join([*(f"{m.name}={m.peerURLs[0]}" for m in resp.members if m.name), f"{name}={peer_url}"])
    s = Server("petcd", live.root / name, name=name, extra_args=_member_args(live.cfg), label=f"petcd-{name}",
               client_port=client_port, peer_port=peer_port, initial_cluster=initial, cluster_state="existing")
    live.group.servers.append(s)
    s.spawn()
    return s, int(resp.member.ID)


def _caught_up(learner: Server, leader: Server) -> bool:
    return status(learner, 2.0).raftAppliedIndex >= status(leader, 2.0).raftAppliedIndex


def add_learner_and_promote(live: Live, name: str) -> None:
    s, mid = _add(live, name, learner=True)
    end = time.monotonic() + RETRY_FOR
    while True:
        try:
            if _caught_up(s, leader_of(_running(live))):
                break
        except grpc.RpcError:
            pass
        if not s.is_running() or time.monotonic() > end:
            raise AssertionError(f"learner {name} did not catch up (running: {s.is_running()})\n{s.log_tail(15)}")
        time.sleep(0.1)
    live.note(f"learner {name} caught up")
    via = live.rnd.choice(_running(live))  # a follower forwards the promotion to the leader, as etcd's does
    ch, cl = _cluster(via)
    with ch:
        _retry(live, f"promote {name} via {via.name}", lambda: cl.MemberPromote(pb.MemberPromoteRequest(ID=mid),
                                                                                timeout=5))
    live.note(f"promoted {name} via {via.name}")
    s.wait_ready(30)
    live.members.append(s)
    live.endpoints.append(s.endpoint)


def remove(live: Live, victim: Server) -> None:
    via = live.rnd.choice([m for m in _running(live) if m is not victim])
    mid = victim.ids().member_id
    if victim.endpoint in live.endpoints:
        live.endpoints.remove(victim.endpoint)
    ch, cl = _cluster(via)
    with ch:
        _retry(live, f"member remove {victim.name} via {via.name}",
               lambda: cl.MemberRemove(pb.MemberRemoveRequest(ID=mid), timeout=5))
    live.note(f"removed {victim.name} via {via.name}")
    live.members.remove(victim)
    # etcd's removed member notices (from the leader, or the next conf change it applies) and exits
    end = time.monotonic() + 15
    while victim.is_running() and time.monotonic() < end:
        time.sleep(0.1)
    if victim.is_running():
        live.problems.append(f"removed member {victim.name} still runs 15 s after its removal")
        victim.stop()
    else:
        live.note(f"{victim.name} exited")


def add_voter(live: Live, name: str) -> None:
    s, _ = _add(live, name, learner=False)
    s.wait_ready(30)
    live.note(f"{name} is ready")
    live.members.append(s)
    live.endpoints.append(s.endpoint)


def _victim(live: Live, leader_too: bool) -> Server:
    running = _running(live)
    leader = leader_of(running)
    victim = live.rnd.choice(running if leader_too else followers_of(running, leader))
    live.note(f"chose {victim.name} ({'the leader' if victim is leader else 'a follower'})")
    return victim


def change_membership(leader_too: bool) -> Fault:
    async def fault(live: Live) -> None:
        await asyncio.to_thread(add_learner_and_promote, live, "m4")
        await asyncio.to_thread(remove, live, await asyncio.to_thread(_victim, live, leader_too))
        victim = await asyncio.to_thread(_victim, live, leader_too)
        live.note(f"replacing {victim.name}")
        await asyncio.to_thread(remove, live, victim)
        await asyncio.to_thread(add_voter, live, "m5")
    return fault


def run_membership(root: Path, cfg: RunConfig, leader_too: bool = False) -> RunResult:
    return asyncio.run(run(root, cfg, start, change_membership(leader_too)))
