"""The backend and what is read from it, as one replaceable state.

The backend and what is read from it (store, membership, alarms, lessor, KV applier) form one
:class:`MemberState`. A snapshot from the leader replaces the backend file; the member then opens
a new MemberState and swaps it whole into the :class:`StateCell` that the server and the peering
share, so nothing ever sees half of an old state and half of a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from petcd.auth import AuthStore, TokenProvider
from petcd.backend import Backend
from petcd.clock import Clock
from petcd.config.settings import ServerSettings
from petcd.lease import Lessor, min_lease_ttl
from petcd.mvcc import KVStore
from petcd.server.apply_kv import KVApplier
from petcd.server.bootstrap import Paths
from petcd.server.membership import Membership


@dataclass(frozen=True, slots=True)
class MemberState:
    """The backend and everything kept in it; replaced whole when a snapshot is installed."""

    backend: Backend
    store: KVStore
    membership: Membership
    alarms: dict[tuple[int, int], int]  # (member id, alarm type) -> alarm type
    lessor: Lessor
    kv: KVApplier
    auth: AuthStore  # users, roles, the auth switch; its token provider outlives the state


class StateCell:
    """The current :class:`MemberState`, shared by everyone who must follow a snapshot install."""

    __slots__ = ("state",)

    def __init__(self, state: MemberState) -> None:
        self.state = state


def open_state(
    settings: ServerSettings, paths: Paths, cluster_id: int, clock: Clock, tokens: TokenProvider
) -> MemberState:
    """Open the backend and everything kept in it (at start, and after a snapshot replaced the
    backend file). ``tokens`` is the member's one token provider: the auth store opened on a
    new backend keeps the tokens already issued (etcd's authStore.Recover)."""
    s = settings
    backend = Backend(
        str(paths.db_path),
        map_size=s.backend_map_size,
        max_map_size=s.backend_max_map_size,
        batch_interval=s.backend_batch_interval,
        batch_limit=s.backend_batch_limit,
        unsafe_no_fsync=s.unsafe_no_fsync,
        clock=clock.now,
    )
    store = KVStore(backend, compaction_batch=s.compaction_batch_limit)
    membership = Membership(backend, cluster_id)
    # etcd's minimum TTL: a lease must outlive one and a half election timeouts
    min_ttl = min_lease_ttl(s.election_ticks, s.heartbeat_interval_ms)
    lessor = Lessor(backend, clock, store, min_ttl=min_ttl, checkpointing=s.lease_checkpoint)
    store.add_listener(lambda events, _rev: lessor.apply_changes(events))
    auth_store = AuthStore(backend, tokens, bcrypt_cost=s.bcrypt_cost)
    return MemberState(backend, store, membership, membership.load_alarms(), lessor, KVApplier(store, lessor),
                       auth_store)
