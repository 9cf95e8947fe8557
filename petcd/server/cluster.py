"""Membership changes requested by clients: add, remove, update, promote.

Each becomes a raft ConfChange carrying the member record in its context. The caller
waits on the change's id until the apply loop has applied it (``EtcdServer`` triggers
the id with the new member list), so a successful answer means every member that
applies the log agrees on the new membership.

Checks are etcd's: valid and unused peer URLs, an existing member, a learner to promote
that has caught up, at most --experimental-max-learners learners, and (--strict-reconfig-check) no change that
would leave the started members without a quorum, nor one made while the peers it needs have not
been connected for HEALTH_INTERVAL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from petcd import errors
from petcd.config.cluster_ids import compute_member_id
from petcd.config.govalues import GoValueError, new_urls
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import StateType
from petcd.server.bootstrap import Member
from petcd.server.maintenance import cluster_header, member_list

if TYPE_CHECKING:
    from petcd.server.etcdserver import EtcdServer

# a learner is ready for promotion once it has 90% of the leader's log, as etcd requires
LEARNER_READY_PERCENT = 0.9
# how long a peer's stream must have been up for it to count as active (etcd's HealthInterval)
HEALTH_INTERVAL = 5.0


def _peer_urls(raw: list[str]) -> list[str]:
    """etcd's types.NewURLs: the URLs validated, normalized and sorted."""
    try:
        return [str(u) for u in new_urls(raw)]
    except GoValueError:
        raise errors.MemberBadURLsError() from None


def _check_urls_unused(srv: EtcdServer, urls: list[str], member_id: int = 0) -> None:
    """No member but member_id may already use one of urls."""
    for m in srv.membership.members.values():
        if m.id != member_id and set(m.peer_urls) & set(urls):
            raise errors.PeerURLExistsError()


def _voters(srv: EtcdServer) -> list[Member]:
    return [m for m in srv.membership.members.values() if not m.is_learner]


def _started(m: Member) -> bool:
    # a member counts as started once it has published its name through raft
    return bool(m.name)


def _connected(srv: EtcdServer, member_id: int) -> bool:
    """Whether this member's stream to member_id is up (always true for itself)."""
    return member_id == srv.member_id or srv.peering.active_since(member_id) is not None


def _active(srv: EtcdServer, member_id: int) -> bool:
    """Whether member_id counts as active, as etcd judges it: itself, or a peer whose stream has
    been up for HEALTH_INTERVAL (a member that just started or reconnected does not count yet)."""
    if member_id == srv.member_id:
        return True
    since = srv.peering.active_since(member_id)
    return since is not None and since <= srv.clock.now() - HEALTH_INTERVAL


def _has_quorum(members: int, started: int) -> bool:
    return started >= members // 2 + 1


def _ready_to_add_voter(srv: EtcdServer) -> bool:
    voters = _voters(srv)
    members = len(voters) + 1
    started = sum(1 for m in voters if _started(m))
    if started == 1 and members == 2:
        return True  # a lone member may always add a second one
    return _has_quorum(members, started)


def _ready_to_remove_voter(srv: EtcdServer, member_id: int) -> bool:
    rest = [m for m in _voters(srv) if m.id != member_id]
    return _has_quorum(len(rest), sum(1 for m in rest if _started(m)))


def _ready_to_promote(srv: EtcdServer) -> bool:
    # the learner counts as a started voter of the future quorum
    voters = _voters(srv)
    return _has_quorum(len(voters) + 1, sum(1 for m in voters if _started(m)) + 1)


async def _propose(srv: EtcdServer, cc_type: raftpb.ConfChangeType, member: Member) -> None:
    cc = raftpb.ConfChange(
        type=cc_type,
        node_id=member.id,
        context=serverpb.ConfChangeContext(member=member.to_record()).SerializeToString(),
    )
    await srv.propose_conf_change(cc)


async def member_add(srv: EtcdServer, r: pb.MemberAddRequest) -> pb.MemberAddResponse:
    urls = _peer_urls(list(r.peerURLs))
    if srv.settings.strict_reconfig_check:
        if not r.isLearner and not _ready_to_add_voter(srv):
            raise errors.MemberNotEnoughStartedError()
        # etcd asks this of learners too
        if not all(_active(srv, m.id) for m in _voters(srv)):
            raise errors.UnhealthyClusterError()
    # etcd mixes the time (in seconds) into a new member's id so a re-added URL gets a new id; within
    # the same second the id repeats, and etcd's checks (in this order) then refuse it
    member_id = compute_member_id(urls, "", int(srv.clock.wall()))
    if member_id in srv.membership.removed:
        raise errors.MemberNotFoundError()  # etcd's ErrIDRemoved, sent as "member not found"
    if member_id in srv.membership.members:
        raise errors.MemberExistsError()
    _check_urls_unused(srv, urls)
    if r.isLearner and sum(1 for m in srv.membership.members.values() if m.is_learner) >= srv.settings.max_learners:
        raise errors.TooManyLearnersError()
    member = Member(member_id, "", urls, [], r.isLearner)
    await _propose(srv, raftpb.ConfChangeAddLearnerNode if r.isLearner else raftpb.ConfChangeAddNode, member)
    return pb.MemberAddResponse(
        header=cluster_header(srv),
        member=pb.Member(ID=member_id, peerURLs=urls, isLearner=r.isLearner),
        members=member_list(srv).members,
    )


async def member_remove(srv: EtcdServer, r: pb.MemberRemoveRequest) -> pb.MemberRemoveResponse:
    member = srv.membership.members.get(r.ID)
    if srv.settings.strict_reconfig_check and not (member is not None and member.is_learner):
        # etcd checks the quorum before it looks the member up
        if not _ready_to_remove_voter(srv, r.ID):
            raise errors.MemberNotEnoughStartedError()
        # a member this one has no stream to is not part of the active quorum
        if r.ID == srv.member_id or _connected(srv, r.ID):
            voters = _voters(srv)
            active = sum(1 for m in voters if _active(srv, m.id))
            if active - 1 < 1 + (len(voters) - 1) // 2:
                raise errors.UnhealthyClusterError()
    if member is None:
        raise errors.MemberNotFoundError()
    await srv.propose_conf_change(raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=r.ID))
    return pb.MemberRemoveResponse(header=cluster_header(srv), members=member_list(srv).members)


async def member_update(srv: EtcdServer, r: pb.MemberUpdateRequest) -> pb.MemberUpdateResponse:
    urls = _peer_urls(list(r.peerURLs))
    member = srv.membership.members.get(r.ID)
    if member is None:
        raise errors.MemberNotFoundError()
    _check_urls_unused(srv, urls, r.ID)
    updated = Member(member.id, member.name, urls, member.client_urls, member.is_learner)
    await _propose(srv, raftpb.ConfChangeUpdateNode, updated)
    return pb.MemberUpdateResponse(header=cluster_header(srv), members=member_list(srv).members)


async def member_promote(srv: EtcdServer, r: pb.MemberPromoteRequest) -> pb.MemberPromoteResponse:
    if srv.role != StateType.LEADER:
        raise errors.NotLeaderError()
    status = srv.raft.status()
    progress = status.progress.get(r.ID)
    if progress is not None:
        leader_match = status.progress[srv.member_id].match
        if progress.match < leader_match * LEARNER_READY_PERCENT:
            raise errors.LearnerNotReadyError()
    if srv.settings.strict_reconfig_check and not _ready_to_promote(srv):
        raise errors.MemberNotEnoughStartedError()
    member = srv.membership.members.get(r.ID)
    if member is None:
        raise errors.MemberNotFoundError()
    if not member.is_learner:
        raise errors.MemberNotLearnerError()
    await _propose(srv, raftpb.ConfChangeAddNode, member)
    return pb.MemberPromoteResponse(header=cluster_header(srv), members=member_list(srv).members)
