"""EtcdServer: one member. Requests in, raft proposals out, committed entries applied.

A write is wrapped in an :class:`InternalRequest` with a fresh id, proposed to raft,
and the caller awaits that id in :class:`Wait`; the apply loop executes the committed
entry on the MVCC store and triggers the id with the response or the error. A
linearizable read first gets a read index from raft (batched: every read that arrives
while a round is in flight shares the next round), waits until that index is applied,
and then reads the local store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from petcd import errors
from petcd.backend import Backend
from petcd.lease import Lessor, min_lease_ttl
from petcd.lease.expiry import run_expiry
from petcd.mvcc import KVStore
from petcd.mvcc.watch_sync import WatchSyncer
from petcd.mvcc.watchable import WatchableStore
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import ConfChangeError, NoLeaderError, ProposalDroppedError, Ready, StateType
from petcd.server.apply_kv import KVApplier, do_range, txn_has_put, txn_is_read_only
from petcd.server.bootstrap import Member, Paths, RaftSetup, open_raft
from petcd.server.compactor import make_compactor, run_compactor
from petcd.server.idgen import IdGenerator
from petcd.server.membership import Membership
from petcd.server.peering import Peering, discover_cluster
from petcd.server.raftnode import RaftDriver
from petcd.server.readindex import LinearizableReads
from petcd.server.settings import ServerSettings
from petcd.server.wait import Wait
from petcd.wal import WAL, WalSnapshot

log = logging.getLogger("petcd.server")
_P = TypeVar("_P")  # what a proposal hands raft: entry data or a ConfChange

# room for the rest of a proposal beyond the request itself
_GRPC_OVERHEAD = 512 * 1024
SLOW_COMMIT_SECONDS = 0.05
# the cluster version a leader records (etcd: major.minor.0 of the lowest member)
CLUSTER_VERSION = "3.5.0"
ALARM_NONE = pb.AlarmType.Value("NONE")
ALARM_NOSPACE = pb.AlarmType.Value("NOSPACE")
ALARM_CORRUPT = pb.AlarmType.Value("CORRUPT")


class EtcdServer:
    def __init__(self, settings: ServerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.paths = Paths.of(settings.data_dir, settings.wal_dir)
        self.wait = Wait(clock)
        self.applied_index = 0
        self.committed_index = 0
        self.term = 0
        self.leader = 0
        self.role = StateType.FOLLOWER
        self._leader_changed = asyncio.Event()
        self.reads = LinearizableReads(self)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.stopped = asyncio.Event()
        self.raft: RaftSetup | None = None
        self.driver: RaftDriver | None = None
        self.backend: Backend | None = None
        self.store: KVStore | None = None
        self.watch_syncer: WatchSyncer | None = None
        self.peering: Peering | None = None
        self.alarms: dict[tuple[int, int], int] = {}  # (member id, alarm type) -> alarm type
        self.snapshot_index = 0

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        rand = random.Random()
        member_id, cluster_id = s.member_id, s.cluster_id
        peers = s.initial_members
        restarting = WAL.exists(str(self.paths.wal_dir))
        if s.initial_cluster_state == "existing" and not restarting:
            member_id, cluster_id, peers = await discover_cluster(s.initial_advertise_peer_urls, s.initial_members)
            log.info("joining cluster %x as member %x", cluster_id, member_id)
        setup = open_raft(
            self.paths,
            member_id,
            cluster_id,
            s.initial_members,
            s.initial_cluster_state,
            s.election_ticks,
            rand,
        )
        self.raft = setup
        self.member_id = setup.member_id
        self.cluster_id = setup.cluster_id
        self.idgen = IdGenerator(self.member_id, int(time.time() * 1000))
        self.paths.snap_dir.mkdir(parents=True, exist_ok=True)
        self._open_state()
        self.watch_syncer = WatchSyncer(self.watchable)
        self.watch_syncer.start()
        self.peering = Peering(self)
        if restarting:
            peers = self.membership.ordered()  # the applied membership; replayed changes add more
        await self.peering.start(list(peers))
        self.applied_index = max(self.store.consistent_index, setup.snapshot.metadata.index if setup.snapshot else 0)
        self.snapshot_index = setup.snapshot.metadata.index if setup.snapshot else 0
        self.driver = RaftDriver(
            setup.node,
            setup.storage,
            setup.wal,
            setup.snapshotter,
            s.heartbeat_interval_ms / 1000.0,
            self._apply_ready,
            self._send,
        )
        self.driver.on_fatal = self._on_fatal
        self.driver.start()
        self._tasks.append(asyncio.create_task(self.reads.run(), name="read-index"))
        self._tasks.append(asyncio.create_task(self._publish(), name="publish"))
        compactor = make_compactor(s.auto_compaction_mode, s.auto_compaction_retention_value, self.clock())
        if compactor is not None:
            self._tasks.append(
                asyncio.create_task(
                    run_compactor(
                        compactor,
                        self.clock,
                        lambda: self.store.rev if self.store is not None else 0,
                        lambda: self.role == StateType.LEADER,
                        self._auto_compact,
                    ),
                    name="auto-compaction",
                )
            )
        self._tasks.append(asyncio.create_task(self._backend_commit_loop(), name="backend-commit"))
        self._tasks.append(asyncio.create_task(run_expiry(self), name="lease-expiry"))
        # a lone voter need not wait out an election timeout: campaign once the bootstrap
        # conf changes are applied (raft refuses before that)
        self._campaign_at = len(s.initial_members) if setup.is_new else setup.storage.last_index()
        self._campaign_pending = True

    def _open_state(self) -> None:
        """Open the backend and everything kept in it (at start, and after a snapshot
        replaced the backend file)."""
        s = self.settings
        self.backend = Backend(
            str(self.paths.db_path),
            map_size=s.backend_map_size,
            max_map_size=s.backend_max_map_size,
            batch_interval=s.backend_batch_interval,
        )
        self.store = KVStore(self.backend)
        if self.watch_syncer is None:
            self.watchable = WatchableStore(self.store)
        else:
            self.watchable.restore(self.store)
        # the file size only changes when a batch commits; the quota check reads this copy
        self.db_size = self.backend.size()
        self.membership = Membership(self.backend, self.cluster_id)
        self.alarms = self.membership.load_alarms()
        # etcd's minimum TTL: a lease must outlive one and a half election timeouts
        min_ttl = min_lease_ttl(s.election_ticks, s.heartbeat_interval_ms)
        self.lessor = Lessor(self.backend, self.clock, self.store, min_ttl=min_ttl)
        self.kv = KVApplier(self.store, self.lessor)
        self.store.add_listener(lambda events, _rev: self.lessor.apply_changes(events))

    def _on_fatal(self, exc: BaseException) -> None:
        self.wait.fail_all(errors.StoppedError)
        asyncio.get_running_loop().create_task(self.stop())

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        if self.peering is not None:
            await self.peering.stop()
        if self.driver is not None:
            await self.driver.stop()
        self.wait.fail_all(errors.StoppedError)
        if self.watch_syncer is not None:
            await self.watch_syncer.stop()
        if self.backend is not None:
            self.backend.force_commit()
            self.backend.close()
        if self.raft is not None:
            self.raft.wal.close()
        self.stopped.set()

    # -- raft plumbing ----------------------------------------------------------------

    def _send(self, msgs: Sequence[raftpb.Message]) -> None:
        if self.peering is not None:
            self.peering.send(list(msgs))

    async def _apply_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            if rd.soft_state.lead != self.leader:
                self.leader = rd.soft_state.lead
                self._leader_changed.set()
                self._leader_changed = asyncio.Event()
            if self.role == StateType.LEADER and rd.soft_state.raft_state != StateType.LEADER:
                self.lessor.demote()
            self.role = rd.soft_state.raft_state
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
            self.committed_index = rd.hard_state.commit
        self.reads.on_read_states(rd.read_states)
        if rd.snapshot is not None and rd.snapshot.metadata.index > self.applied_index:
            await self._apply_snapshot(rd.snapshot)
        if self._campaign_pending and self.applied_index >= self._campaign_at:
            self._campaign_pending = False
            voters = self.raft.node.status().config.voters if self.raft is not None else []
            if list(voters) == [self.member_id] and self.leader == 0:
                self.raft.node.campaign()  # type: ignore[union-attr]
        if rd.committed_entries:
            await self._wait_backend_writable()
            for ent in rd.committed_entries:
                self._apply_entry(ent)
            assert self.backend is not None and self.store is not None
            if self.store.compaction_pending:
                # one batch per round keeps applies flowing while old revisions are removed
                self.store.compact_step()
            self._commit_backend()
            self.reads.on_applied(self.applied_index)
            await self._maybe_snapshot()

    async def _wait_backend_writable(self) -> None:
        # a write while defrag swaps the file would block this thread, and with it the event
        # loop; wait on the loop instead so ticks and client I/O go on
        assert self.backend is not None
        while self.backend.write_blocked:
            self.backend.commit_if_due()
            await asyncio.sleep(0.002)

    def _apply_entry(self, ent: raftpb.Entry) -> None:
        assert self.raft is not None and self.store is not None
        # fields read once: each read of a protobuf field builds a new Python object
        index = ent.index
        data = ent.data
        if ent.type == raftpb.EntryConfChange:
            cc = raftpb.ConfChange.FromString(data)
            self.raft.node.apply_conf_change(cc)
            if self.peering is not None:
                self.peering.on_conf_change(cc)
            if index > self.store.consistent_index:
                self.membership.apply_conf_change(cc, index, self.store)
                self.on_conf_change(cc)
            if cc.id:
                self.wait.trigger(cc.id, None)
        elif not data:
            # the new leader's empty entry: everything of earlier terms is applied, so the
            # lessor can take over the clocks (extended by an election timeout)
            if self.role == StateType.LEADER and ent.term == self.term:
                self.lessor.promote(self.settings.election_timeout_ms / 1000.0)
        elif index > self.store.consistent_index:
            req = serverpb.InternalRequest.FromString(data)
            try:
                result: Any = self._apply_request(req, index)
            except errors.PetcdError as exc:
                result = exc
            req_id = req.header.id
            if req_id:
                self.wait.trigger(req_id, result)
        self.applied_index = index

    def _apply_request(self, req: serverpb.InternalRequest, index: int) -> Any:
        kind = req.WhichOneof("request")
        capped = ALARM_NOSPACE in self.alarms.values()
        if kind == "put":
            if capped:
                raise errors.NoSpaceError()
            return self.kv.put(req.put, index)
        if kind == "delete_range":
            return self.kv.delete_range(req.delete_range, index)
        if kind == "txn":
            if capped and txn_has_put(req.txn):
                raise errors.NoSpaceError()
            return self.kv.txn(req.txn, index)
        if kind == "compaction":
            return self._apply_compaction(req.compaction, index)
        if kind == "alarm":
            return self._apply_alarm(req.alarm, index)
        if kind == "member_attr_set":
            a = req.member_attr_set
            self.membership.set_attributes(a.member_id, a.name, list(a.client_urls))
            self.store.set_consistent_index(index)  # type: ignore[union-attr]
            return None
        if kind == "cluster_version_set":
            self.membership.set_cluster_version(req.cluster_version_set.ver)
            self.store.set_consistent_index(index)  # type: ignore[union-attr]
            return None
        if kind in ("lease_grant", "lease_revoke", "lease_checkpoint"):
            if kind == "lease_grant" and capped:
                raise errors.NoSpaceError()
            return self.lessor.apply(req, index, self.store)
        raise errors.UnsupportedRequestError(f"unsupported request {kind}")

    def _apply_compaction(self, c: pb.CompactionRequest, index: int) -> pb.CompactionResponse:
        assert self.store is not None
        self.kv.check_compaction(c.revision)
        self.store.compact(c.revision)
        self.store.set_consistent_index(index)
        resp = pb.CompactionResponse()
        resp.header.revision = self.store.rev
        return resp

    def _apply_alarm(self, a: pb.AlarmRequest, index: int) -> pb.AlarmResponse:
        resp = pb.AlarmResponse()
        key = (a.memberID, a.alarm)
        if a.action == pb.AlarmRequest.GET:
            pass
        elif a.action == pb.AlarmRequest.ACTIVATE:
            if a.alarm != ALARM_NONE and key not in self.alarms:
                self.alarms[key] = a.alarm
                resp.alarms.add(memberID=a.memberID, alarm=a.alarm)
                log.warning("alarm %s raised by member %x", pb.AlarmType.Name(a.alarm), a.memberID)
        elif a.action == pb.AlarmRequest.DEACTIVATE:
            if key in self.alarms:
                del self.alarms[key]
                resp.alarms.add(memberID=a.memberID, alarm=a.alarm)
        self.membership.save_alarms(self.alarms, index, self.store)
        return resp

    async def _apply_snapshot(self, snap: raftpb.Snapshot) -> None:
        """Install a snapshot from the leader: its backend file replaces ours."""
        assert self.peering is not None and self.backend is not None
        index = snap.metadata.index
        db = self.peering.take_snapshot_db(index)
        if db is None:
            raise RuntimeError(f"raft snapshot at index {index} arrived without its database file")
        old = self.backend
        self.backend = None
        old.close()
        await asyncio.to_thread(os.replace, db, self.paths.db_path)
        was_leader = self.role == StateType.LEADER
        self._open_state()
        if was_leader:
            self.lessor.promote(self.settings.election_timeout_ms / 1000.0)
        assert self.store is not None
        self.applied_index = max(self.store.consistent_index, index)
        self.snapshot_index = index
        self.peering.sync_members()
        log.info("installed snapshot at index %d (store revision %d)", index, self.store.rev)

    async def _maybe_snapshot(self) -> None:
        assert self.raft is not None and self.backend is not None and self.driver is not None
        if self.applied_index - self.snapshot_index <= self.settings.snapshot_count:
            return
        index = self.applied_index
        # the backend must hold everything the snapshot covers before the WAL lets go of it
        self.backend.force_commit()
        data = self.membership.snapshot_data().SerializeToString()
        snap = self.raft.storage.create_snapshot(index, self.raft.node.status().config, data)
        storage = self.raft.storage
        wal = self.raft.wal

        def persist() -> None:
            self.raft.snapshotter.save_snap(snap)  # type: ignore[union-attr]
            md = snap.metadata
            wal.save_snapshot(WalSnapshot(md.index, md.term, md.conf_state))
            wal.release_lock_to(index)
            # --max-wals / --max-snapshots: 0 keeps everything
            wal.purge(self.settings.max_wals)
            self.raft.snapshotter.purge(self.settings.max_snapshots)  # type: ignore[union-attr]

        await self.driver.run_io(persist)
        # keep some entries so a slightly slow follower need not get a full snapshot
        compact_to = index - self.settings.snapshot_catchup_entries
        if compact_to > storage.first_index():
            storage.compact(compact_to)
        self.snapshot_index = index
        log.info("saved snapshot at index %d", index)

    def _commit_backend(self) -> None:
        assert self.backend is not None
        started = self.clock()
        if self.backend.commit_if_due():
            self.db_size = self.backend.size()
            took = self.clock() - started
            if took > SLOW_COMMIT_SECONDS:
                log.warning("backend commit took %.1f ms (fsync of the database file)", took * 1000)

    async def _backend_commit_loop(self) -> None:
        assert self.backend is not None
        assert self.store is not None
        while True:
            await asyncio.sleep(self.settings.backend_batch_interval)
            if self.store.compaction_pending and not self.backend.write_blocked:
                self.store.compact_step()
            self._commit_backend()

    async def _auto_compact(self, rev: int) -> None:
        await self.compact(pb.CompactionRequest(revision=rev))

    async def _publish(self) -> None:
        """Announce this member's name and client URLs through raft, as etcd does at start;
        the first leader also records the cluster version."""
        attrs = serverpb.MemberAttrSet(
            member_id=self.member_id, name=self.settings.name, client_urls=self.settings.advertise_client_urls
        )
        while not self._stopping:
            try:
                await self.propose(serverpb.InternalRequest(member_attr_set=attrs))
                break
            except errors.PetcdError as exc:
                log.warning("publishing member attributes failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
        if self.role == StateType.LEADER and self.membership.cluster_version != CLUSTER_VERSION:
            await self._propose_quietly(
                serverpb.InternalRequest(cluster_version_set=serverpb.ClusterVersionSet(ver=CLUSTER_VERSION))
            )

    # -- proposals --------------------------------------------------------------------

    async def propose(self, req: serverpb.InternalRequest) -> Any:
        """Propose a request through raft and return the applied result (or raise)."""
        assert self.raft is not None and self.driver is not None
        if self._stopping:
            raise errors.StoppedError()
        req_id = self.idgen.next()
        req.header.id = req_id
        data = req.SerializeToString()
        if len(data) > self.settings.max_request_bytes:
            raise errors.RequestTooLargeError()
        result = await self._propose_and_wait(req_id, self.raft.node.propose, data)
        if isinstance(result, BaseException):
            raise result
        return result

    async def propose_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Propose a membership change and wait until it is applied."""
        assert self.raft is not None and self.driver is not None
        if self._stopping:
            raise errors.StoppedError()
        cc.id = self.idgen.next()
        await self._propose_and_wait(cc.id, self.raft.node.propose_conf_change, cc)

    async def _propose_and_wait(self, req_id: int, submit: Callable[[_P], None], payload: _P) -> Any:
        """submit(payload) to raft, waiting for a leader while there is none, then wait until the
        apply loop triggers req_id; one request timeout covers both."""
        assert self.driver is not None
        fut = self.wait.register(req_id)
        deadline = self.clock() + self.settings.request_timeout
        leader = self.leader
        try:
            while True:
                try:
                    submit(payload)
                    break
                except NoLeaderError:
                    await self._await_leader(deadline)
                except ProposalDroppedError:
                    raise errors.TooManyRequestsError() from None
                except ConfChangeError as exc:
                    raise errors.ConfChangeRejectedError(str(exc)) from None
            self.driver.notify()
            self.wait.expire_at(req_id, deadline)
            return await fut
        except TimeoutError:
            raise self._timeout_error(leader) from None
        finally:
            self.wait.cancel(req_id)

    def on_conf_change(self, cc: raftpb.ConfChange) -> None:
        """A newly applied conf change (not a replay)."""
        if cc.type == raftpb.ConfChangeRemoveNode and cc.node_id == self.member_id:
            log.warning("this member (%x) was removed from the cluster; stopping", self.member_id)
            asyncio.get_running_loop().create_task(self.stop())

    def _timeout_error(self, leader_at_start: int) -> errors.PetcdError:
        # a proposal forwarded to a leader that then failed is lost; say so, as etcd does
        if leader_at_start == 0 or leader_at_start != self.leader:
            return errors.TimeoutDueToLeaderFailError()
        return errors.RequestTimeoutError()

    async def _await_leader(self, deadline: float) -> None:
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise TimeoutError
        await asyncio.wait_for(self._leader_changed.wait(), remaining)

    # -- linearizable reads -----------------------------------------------------------

    async def linearizable_read(self) -> None:
        """Return once this member has applied everything committed before the call."""
        if self._stopping:
            raise errors.StoppedError()
        await self.reads.wait()

    # -- KV API -----------------------------------------------------------------------

    def header(self, revision: int | None = None) -> pb.ResponseHeader:
        assert self.store is not None
        return pb.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.store.rev if revision is None else revision,
            raft_term=self.term,
        )

    def _fill_header(self, h: pb.ResponseHeader) -> None:
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.term

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        assert self.store is not None
        if not r.serializable:
            await self.linearizable_read()
        resp = do_range(self.store, r, self.store.rev)
        self._fill_header(resp.header)
        return resp

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        self._check_quota(len(r.key) + len(r.value))
        resp: pb.PutResponse = await self.propose(serverpb.InternalRequest(put=r))
        self._fill_header(resp.header)
        return resp

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        resp: pb.DeleteRangeResponse = await self.propose(serverpb.InternalRequest(delete_range=r))
        self._fill_header(resp.header)
        return resp

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        assert self.store is not None
        if txn_is_read_only(r):
            # answered locally after a read index, like a range
            await self.linearizable_read()
            resp = self.kv.read_only_txn(r)
        else:
            if txn_has_put(r):
                self._check_quota(r.ByteSize())
            resp = await self.propose(serverpb.InternalRequest(txn=r))
        _fill_txn_headers(resp, self)
        return resp

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        assert self.store is not None
        resp: pb.CompactionResponse = await self.propose(serverpb.InternalRequest(compaction=r))
        if r.physical:
            while self.store.compaction_pending:
                await asyncio.sleep(0.01)
        self._fill_header(resp.header)
        return resp

    def _check_quota(self, cost: int) -> None:
        if ALARM_NOSPACE in self.alarms.values():
            raise errors.NoSpaceError()
        if self.db_size + cost > self.settings.quota_backend_bytes:
            # raise the alarm through raft so every member agrees, then refuse
            req = serverpb.InternalRequest(
                alarm=pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=ALARM_NOSPACE)
            )
            asyncio.get_running_loop().create_task(self._propose_quietly(req))
            raise errors.NoSpaceError()

    async def _propose_quietly(self, req: serverpb.InternalRequest) -> None:
        try:
            await self.propose(req)
        except errors.PetcdError as exc:
            log.warning("proposal failed: %s", exc)


def _fill_txn_headers(resp: pb.TxnResponse, srv: EtcdServer) -> None:
    # etcd fills only the outer header; responses of the ops inside carry just the revision
    srv._fill_header(resp.header)


__all__ = ["EtcdServer", "Member"]
