"""Leadership transfer, as etcd 3.5: the MoveLeader call, and the hand-over a leader makes when
it is stopped gracefully (etcd's EtcdServer.Stop → TransferLeadership).

Why on stop: a leader that just goes away leaves the others to wait out an election timeout
(5 s and more with the notebook's settings), and proposals the followers forwarded to it meanwhile
are lost until their clients time out and retry. Handing leadership over first costs a few
heartbeats. etcd's rules, kept here:

- only a leader transfers, and only when there is another voter (learners never lead);
- the transferee is the voter whose stream from this member has been up longest (the transport's
  active-since times; on equal times the lowest id, as etcd walks the sorted voter ids): the
  member most likely to have the whole log and a healthy link;
- no voter with a stream up: the cluster is unhealthy, and there is no transfer;
- the transfer is waited for up to the request timeout (5 s + 2 election timeouts); a failure
  or a timeout is only logged, and the stop goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from petcd import errors
from petcd.config.govalues import format_go_duration
from petcd.server.bootstrap import Member

if TYPE_CHECKING:
    from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.server")

ActiveSince = Callable[[int], float | None]


def longest_connected(member_id: int, members: Iterable[Member], active_since: ActiveSince) -> int | None:
    """The voter other than ``member_id`` whose stream has been up longest (``active_since``
    gives the clock time a peer's stream came up, None while it is down); the lowest id among
    equals; None when no such voter's stream is up. Learners are never chosen."""
    best: tuple[float, int] | None = None
    for m in members:
        if m.is_learner or m.id == member_id:
            continue
        since = active_since(m.id)
        if since is not None and (best is None or (since, m.id) < best):
            best = (since, m.id)
    return None if best is None else best[1]


async def move_leader(srv: EtcdServer, target: int, timeout: float) -> None:
    """Make the voter ``target`` the leader and wait (at most ``timeout`` seconds on the clock)
    until this member knows it leads: etcd's EtcdServer.MoveLeader, its log lines included.
    BadLeaderTransfereeError for an unknown member or a learner, LeaderTransferTimeoutError when
    the wait runs out."""
    member = srv.membership.members.get(target)
    if member is None or member.is_learner:
        raise errors.BadLeaderTransfereeError()
    lead = srv.leader
    started = srv.clock.now()
    log.info("leadership transfer starting (local-member-id %x, current-leader-member-id %x, "
             "transferee-member-id %x)", srv.member_id, lead, target)
    srv.raft.transfer_leader(target)  # raft ignores a transfer to the leader itself
    deadline = started + timeout
    while srv.leader != target:
        try:
            await srv.await_leader_change(deadline)
        except TimeoutError:
            raise errors.LeaderTransferTimeoutError() from None
    took = srv.clock.now() - started
    log.info("leadership transfer finished (local-member-id %x, old-leader-member-id %x, "
             "new-leader-member-id %x, took %s)", srv.member_id, lead, target,
             format_go_duration(int(took * 1e9)))


async def transfer_leadership(srv: EtcdServer) -> None:
    """etcd's TransferLeadership: a leader with another voter hands leadership to the longest
    connected one (see the module's rules); anything else is logged as skipped. Raises
    UnhealthyClusterError when no voter's stream is up, and what ``move_leader`` raises."""
    if srv.leader != srv.member_id:
        log.info("skipped leadership transfer; local server is not leader (local-member-id %x, "
                 "current-leader-member-id %x)", srv.member_id, srv.leader)
        return
    voters = [m for m in srv.membership.members.values() if not m.is_learner]
    if len(voters) <= 1:
        log.info("skipped leadership transfer for single voting member cluster (local-member-id %x, "
                 "current-leader-member-id %x)", srv.member_id, srv.leader)
        return
    target = longest_connected(srv.member_id, voters, srv.peering.active_since)
    if target is None:
        raise errors.UnhealthyClusterError()
    await move_leader(srv, target, srv.settings.request_timeout)


async def transfer_before_stop(srv: EtcdServer) -> None:
    """The first half of etcd's graceful stop: transfer leadership if this member leads; a
    failure is logged and the stop goes on. Nothing to do for a member already stopping (it was
    removed, or its raft node failed: it has no raft to transfer with)."""
    if srv.stopping:
        return
    try:
        await transfer_leadership(srv)
    except errors.PetcdError as exc:
        log.warning("leadership transfer failed (local-member-id %x): %s", srv.member_id, exc)
