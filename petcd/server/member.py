"""Building a whole member before it runs: ``build_member(settings, clock)``.

Everything an :class:`EtcdServer` needs is made here and handed to its constructor: the raft
node (RawNode, log, WAL, snapshotter), the backend state (``petcd.server.state``), the watchable
store, the peering, the id generator. Joining an existing cluster asks the other members who this
member is first (``discover_cluster``), which is why building is async.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from petcd import auth
from petcd.clock import Clock
from petcd.config.settings import ServerSettings
from petcd.errors import InvalidAuthOptsError
from petcd.mvcc.watch_sync import WatchSyncer
from petcd.mvcc.watchable import WatchableStore
from petcd.server.apply import ApplierStep, build_chain
from petcd.server.bootstrap import BootstrapError, Member, Paths, open_raft
from petcd.server.etcdserver import EtcdServer
from petcd.server.idgen import IdGenerator
from petcd.server.peering import Peering, TransportFactory
from petcd.server.raftnode import RaftNode
from petcd.server.state import StateCell, open_state
from petcd.wal import WAL

log = logging.getLogger("petcd.server")


# (own peer URLs, --initial-cluster members) -> (member id, cluster id, the cluster's members)
Discover = Callable[[list[str], list[Member]], Awaitable[tuple[int, int, list[Member]]]]


async def build_member(
    settings: ServerSettings,
    clock: Clock,
    make_transport: TransportFactory,
    discover: Discover,
    rand: random.Random | None = None,
    apply_steps: Sequence[ApplierStep] = (),
) -> EtcdServer:
    """A member ready to ``start()``: a new one, one joining an existing cluster (asking
    ``discover`` who it is), or a restart from its data dir. Raises BootstrapError (or WALError)
    when the data dir cannot be used. ``petcd.peer.member.build`` passes the real transport.
    ``apply_steps`` go into the apply chain between the quota check and the backend dispatch."""
    s = settings
    rand = rand if rand is not None else random.Random()
    try:
        # simple tokens are bearer secrets: their letters come from the system's randomness
        tokens = auth.new_token_provider(s.auth_token, clock, random.SystemRandom(), float(s.auth_token_ttl))
    except InvalidAuthOptsError as exc:
        # etcd fails to start with this text ("auth: invalid auth options")
        raise BootstrapError(f"failed to create token provider: {exc}") from None
    paths = Paths.of(s.data_dir, s.wal_dir)
    member_id, cluster_id = s.member_id, s.cluster_id
    peers = s.initial_members
    restarting = WAL.exists(str(paths.wal_dir))
    if s.initial_cluster_state == "existing" and not restarting:
        member_id, cluster_id, peers = await discover(s.initial_advertise_peer_urls, s.initial_members)
        log.info("joining cluster %x as member %x", cluster_id, member_id)
    setup = open_raft(
        paths, member_id, cluster_id, s.initial_members, s.initial_cluster_state, s.election_ticks, rand,
        pre_vote=s.pre_vote, unsafe_no_fsync=s.unsafe_no_fsync, force_new_cluster=s.force_new_cluster,
    )
    raft = RaftNode(
        setup.node, setup.storage, setup.wal, setup.snapshotter, clock, s.heartbeat_interval_ms / 1000.0
    )
    paths.snap_dir.mkdir(parents=True, exist_ok=True)
    cell = StateCell(open_state(s, paths, setup.cluster_id, clock, tokens))
    store = cell.state.store
    if restarting:
        peers = cell.state.membership.ordered()  # the applied membership; replayed changes add more
    if s.initial_election_tick_advance and len(peers) > 1:
        # --initial-election-tick-advance: most of the first election timeout has already passed, so
        # a member whose peers are gone does not wait a whole timeout (a lone voter campaigns at once)
        raft.advance_ticks(s.election_ticks - 2)
    snapshot_index = setup.snapshot.metadata.index if setup.snapshot else 0
    peering = Peering(s, paths, setup.member_id, setup.cluster_id, raft, cell, list(peers), make_transport, clock)
    watchable = WatchableStore(store)
    return EtcdServer(
        settings=s,
        clock=clock,
        paths=paths,
        member_id=setup.member_id,
        cluster_id=setup.cluster_id,
        raft=raft,
        cell=cell,
        applier=build_chain(cell, apply_steps),
        watchable=watchable,
        watch_syncer=WatchSyncer(watchable, clock),
        peering=peering,
        idgen=IdGenerator(setup.member_id, int(clock.wall() * 1000)),
        applied_index=max(store.consistent_index, snapshot_index),
        snapshot_index=snapshot_index,
        # a lone voter need not wait out an election timeout: campaign once the bootstrap
        # conf changes are applied (raft refuses before that)
        campaign_at=len(s.initial_members) if setup.is_new else setup.storage.last_index(),
    )

