"""EtcdServer: one member. Requests in, raft proposals out, committed entries applied.

A write is wrapped in an :class:`InternalRequest` with a fresh id, proposed to raft,
and the caller awaits that id in :class:`Wait`; the apply loop runs the committed entry
through the apply chain (``petcd.server.apply``), records the entry's index and term in the
backend batch of its changes, and triggers the id with the response or the error. A
linearizable read first gets a read index from raft (batched: every read that arrives
while a round is in flight shares the next round), waits until that index is applied,
and then reads the local store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from petcd import auth, errors
from petcd.auth import AuthStore
from petcd.backend import Backend
from petcd.clock import Clock, wait_for
from petcd.config.settings import ServerSettings
from petcd.lease import Lessor
from petcd.lease.expiry import run_expiry
from petcd.mvcc import KVStore
from petcd.mvcc.watch_sync import WatchSyncer
from petcd.mvcc.watchable import WatchableStore
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import ConfChangeError, NoLeaderError, ProposalDroppedError, Ready, StateType
from petcd.server import authserver, quota
from petcd.server.apply import ALARM_CORRUPT, ALARM_NONE, ALARM_NOSPACE, Applier
from petcd.server.apply_kv import KVApplier, do_range, txn_has_put, txn_is_read_only
from petcd.server.backend_wait import wait_writable
from petcd.server.bootstrap import Member, Paths
from petcd.server.compactor import make_compactor, run_compactor
from petcd.server.idgen import IdGenerator
from petcd.server.membership import Membership
from petcd.server.peering import Peering
from petcd.server.raftnode import RaftNode
from petcd.server.readindex import LinearizableReads
from petcd.server.state import MemberState, StateCell, open_state
from petcd.server.timeouts import timeout_error
from petcd.server.wait import Wait
from petcd.stats import Durations, exponential_buckets

log = logging.getLogger("petcd.server")
_P = TypeVar("_P")  # what a proposal hands raft: entry data or a ConfChange

# room for the rest of a proposal beyond the request itself
_GRPC_OVERHEAD = 512 * 1024
SLOW_COMMIT_SECONDS = 0.05
# the cluster version a leader records (etcd: major.minor.0 of the lowest member)
CLUSTER_VERSION = "3.5.0"
# etcd's buckets for etcd_disk_backend_commit_duration_seconds: 1 ms to 8.192 s
BACKEND_COMMIT_BUCKETS = exponential_buckets(0.001, 2, 14)


class EtcdServer:
    """One member, built whole by ``petcd.server.member.build_member``; ``start()`` runs it."""

    def __init__(
        self,
        *,
        settings: ServerSettings,
        clock: Clock,
        paths: Paths,
        member_id: int,
        cluster_id: int,
        raft: RaftNode,
        cell: StateCell,
        applier: Applier,
        watchable: WatchableStore,
        watch_syncer: WatchSyncer,
        peering: Peering,
        idgen: IdGenerator,
        applied_index: int,
        snapshot_index: int,
        campaign_at: int,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.paths = paths
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.raft = raft
        self._cell = cell
        self._applier = applier  # the apply chain (petcd.server.apply)
        self.watchable = watchable
        self.watch_syncer = watch_syncer
        self.peering = peering
        self.idgen = idgen
        self.applied_index = applied_index
        self.snapshot_index = snapshot_index
        self.wait = Wait(clock)
        self.committed_index = 0
        self.term = 0
        self.leader = 0
        # clock time this member last learned of a new leader (etcd's leadElectedTime)
        self.leader_elected_at = float("-inf")
        self.role = StateType.FOLLOWER
        self._leader_changed = asyncio.Event()
        self.reads = LinearizableReads(self)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._removed = False  # this member learned it was removed (applied, or told by a peer)
        self.stopped = asyncio.Event()
        # set once this member's own attributes are applied (etcd's ReadyNotify): it then knows
        # a leader, and has applied the log up to an entry made after it started (a joining
        # member: the snapshot and entries it was sent). Its client URLs are served from then on
        self.ready = asyncio.Event()
        # what the quota weighs (petcd.server.quota): it only changes when a batch commits, and
        # the quota check reads this copy
        self.db_size_in_use = cell.state.backend.size_in_use()
        self._campaign_at = campaign_at
        self._campaign_pending = True
        self.fatal: BaseException | None = None  # what stopped the raft node, if anything
        self._compaction_done = asyncio.Event()
        # counters read by /metrics (petcd.http.metrics) at scrape time
        self.leader_changes = 0
        self.proposals_pending = 0
        self.proposals_failed = 0
        self.backend_commit_durations = Durations(BACKEND_COMMIT_BUCKETS)

    # -- the replaceable state (see petcd.server.state) --------------------------------

    @property
    def state(self) -> MemberState:
        return self._cell.state

    @property
    def backend(self) -> Backend:
        return self._cell.state.backend

    @property
    def store(self) -> KVStore:
        return self._cell.state.store

    @property
    def membership(self) -> Membership:
        return self._cell.state.membership

    @property
    def alarms(self) -> dict[tuple[int, int], int]:
        return self._cell.state.alarms

    @property
    def lessor(self) -> Lessor:
        return self._cell.state.lessor

    @property
    def kv(self) -> KVApplier:
        return self._cell.state.kv

    @property
    def auth_store(self) -> AuthStore:
        return self._cell.state.auth

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self.watch_syncer.start()
        await self.peering.start()
        self.raft.start(self._on_ready, self._apply_ready, self._send, self._on_fatal)
        self._spawn(self.reads.run(), "read-index")
        self._spawn(self._publish(), "publish")
        self._spawn(self._stop_when_removed(), "removed-watch")
        if self.member_id in self.membership.removed:
            self._stop_removed()  # restarted on the data of a member that was removed
        compactor = make_compactor(s.auto_compaction_mode, s.auto_compaction_retention_value, self.clock.now())
        if compactor is not None:
            self._spawn(
                run_compactor(
                    compactor,
                    self.clock,
                    lambda: self.store.rev,
                    lambda: self.role == StateType.LEADER,
                    self._auto_compact,
                ),
                "auto-compaction",
            )
        self._spawn(self._backend_commit_loop(), "backend-commit")
        # the leader's revocations of expired leases run as root (etcd's WithRoot); the task
        # keeps the caller it is created with
        previous = authserver.CALLER.set(authserver.SERVER)
        try:
            self._spawn(run_expiry(self), "lease-expiry")
        finally:
            authserver.CALLER.reset(previous)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_ended)
        self._tasks.append(task)

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        """A member task that dies of an error it does not handle (a bug) takes a duty with it
        (lease expiry, read index, compaction, commits): the member stops rather than go on
        without it, as etcd's process would (its goroutines panic)."""
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is None:
            return  # done with its work (publishing the member's attributes)
        if self.fatal is None:
            log.critical("member task %s failed: %r", task.get_name(), exc, exc_info=exc)
        self._on_fatal(exc)

    async def _stop_when_removed(self) -> None:
        await self.peering.removed.wait()
        self._stop_removed()

    def _on_fatal(self, exc: BaseException) -> None:
        if self.fatal is None:  # the first failure is the cause; later ones follow from it
            self.fatal = exc
        self.wait.fail_all(errors.StoppedError)
        asyncio.get_running_loop().create_task(self.stop())

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        try:
            await self.peering.stop()
            await self.raft.stop()
            self.wait.fail_all(errors.StoppedError)
            await self.watch_syncer.stop()
            try:
                self.backend.force_commit()
            except Exception as exc:
                # a full disk (EIO/ENOSPC from LMDB): what is not committed is in the WAL and
                # replayed on restart; the member must still stop, and exit as failed
                log.error("final backend commit failed: %s", exc)
                if self.fatal is None:
                    self.fatal = exc
            self.backend.close()
            self.raft.close()
        finally:
            # whatever failed above, whoever waits for the stop (the command's main) must wake
            self._compaction_done.set()
            self.stopped.set()

    # -- raft plumbing ----------------------------------------------------------------

    def _send(self, msgs: Sequence[raftpb.Message]) -> None:
        self.peering.send(list(msgs))

    def _on_ready(self, rd: Ready) -> None:
        """What a Ready says about leader, term, commit and reads, taken at once by the raft
        driver: the apply of its entries (``_apply_ready``) may lag behind."""
        if rd.soft_state is not None:
            if rd.soft_state.lead != self.leader:
                if rd.soft_state.lead != 0:
                    self.leader_changes += 1  # etcd counts changes to a known leader
                    self.leader_elected_at = self.clock.now()
                self.leader = rd.soft_state.lead
                self._leader_changed.set()
                self._leader_changed = asyncio.Event()
                self.reads.on_leader_change(self.leader)
            if self.role == StateType.LEADER and rd.soft_state.raft_state != StateType.LEADER:
                self.lessor.demote()
            self.role = rd.soft_state.raft_state
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
            self.committed_index = rd.hard_state.commit
        # a read waits for its index to be applied (reads.on_applied, from the apply queue)
        self.reads.on_read_states(rd.read_states)
        self._maybe_campaign()

    async def _apply_ready(self, rd: Ready) -> None:
        """A Ready's snapshot and committed entries, in log order (the raft node's apply queue)."""
        if rd.snapshot is not None and rd.snapshot.metadata.index > self.applied_index:
            await self._apply_snapshot(rd.snapshot)
        if rd.committed_entries:
            await wait_writable(self.backend)
            for ent in rd.committed_entries:
                self._apply_entry(ent)
            self._compact_step()
            self._commit_backend()
            self.reads.on_applied(self.applied_index)
            await self._maybe_snapshot()
        self._maybe_campaign()

    def _maybe_campaign(self) -> None:
        if self._campaign_pending and self.applied_index >= self._campaign_at:
            self._campaign_pending = False
            if self.raft.voters() == [self.member_id] and self.leader == 0:
                self.raft.campaign()

    def _apply_entry(self, ent: raftpb.Entry) -> None:
        state = self._cell.state
        # fields read once: each read of a protobuf field builds a new Python object
        index = ent.index
        data = ent.data
        fresh = index > state.store.consistent_index  # not yet in the backend (else a replay)
        if ent.type == raftpb.EntryConfChange:
            cc = raftpb.ConfChange.FromString(data)
            self.raft.apply_conf_change(cc)
            self.peering.on_conf_change(cc)
            if fresh:
                state.membership.apply_conf_change(cc)
                self.on_conf_change(cc)
            if cc.id:
                self.wait.trigger(cc.id, None)
        elif not data:
            # the new leader's empty entry: everything of earlier terms is applied, so the
            # lessor can take over the clocks (extended by an election timeout)
            if self.role == StateType.LEADER and ent.term == self.term:
                state.lessor.promote(self.settings.election_timeout_ms / 1000.0)
        elif fresh:
            req = serverpb.InternalRequest.FromString(data)
            try:
                result: Any = self._applier.apply(req, index)
            except errors.PetcdError as exc:
                result = exc
            req_id = req.header.id
            if req_id:
                self.wait.trigger(req_id, result)
        if fresh:
            # the one place the consistent index is recorded: every kind of entry, applied or
            # refused (a replay would refuse it again), in the backend batch of its changes
            state.store.set_consistent_index(index, ent.term)
        self.applied_index = index

    def _compact_step(self) -> None:
        store = self.store
        if store.compaction_pending and not self.backend.write_blocked:
            # one batch per round keeps applies flowing while old revisions are removed
            store.compact_step()
            if not store.compaction_pending:
                self._compaction_done.set()

    async def _apply_snapshot(self, snap: raftpb.Snapshot) -> None:
        """Install a snapshot from the leader: its backend file replaces ours, and a new
        member state opened on it replaces the old one whole."""
        index = snap.metadata.index
        db = self.peering.take_snapshot_db(index)
        if db is None:
            raise RuntimeError(f"raft snapshot at index {index} arrived without its database file")
        self.backend.close()
        await self.clock.offload(os.replace, db, self.paths.db_path)
        was_leader = self.role == StateType.LEADER
        state = open_state(self.settings, self.paths, self.cluster_id, self.clock, self.auth_store.tokens)
        self._cell.state = state
        self.watchable.restore(state.store)
        self.db_size_in_use = state.backend.size_in_use()
        if was_leader:
            state.lessor.promote(self.settings.election_timeout_ms / 1000.0)
        self.applied_index = max(state.store.consistent_index, index)
        self.snapshot_index = index
        self.peering.sync_members()
        self._compaction_done.set()  # a waiter looks at the new store
        self.reads.on_applied(self.applied_index)  # reads waiting for an index the snapshot covers
        log.info("installed snapshot at index %d (store revision %d)", index, state.store.rev)

    async def _maybe_snapshot(self) -> None:
        if self.applied_index - self.snapshot_index <= self.settings.snapshot_count:
            return
        index = self.applied_index
        # the backend must hold everything the snapshot covers before the WAL lets go of it
        self.backend.force_commit()
        snap = self.raft.create_snapshot(index, self.membership.snapshot_data().SerializeToString())
        await self.raft.persist_snapshot(snap, self.settings.max_wals, self.settings.max_snapshots)
        # keep some entries so a slightly slow follower need not get a full snapshot
        self.raft.compact_log(index - self.settings.snapshot_catchup_entries)
        self.snapshot_index = index
        log.info("saved snapshot at index %d", index)

    def _commit_backend(self) -> None:
        backend = self.backend
        started = self.clock.now()
        if backend.commit_if_due():
            self.db_size_in_use = backend.size_in_use()
            took = self.clock.now() - started
            self.backend_commit_durations.observe(took)
            if took > SLOW_COMMIT_SECONDS:
                log.warning("backend commit took %.1f ms (fsync of the database file)", took * 1000)

    async def _backend_commit_loop(self) -> None:
        while True:
            await self.clock.sleep(self.settings.backend_batch_interval)
            # a failure ends the task, which stops the member (_task_ended): a failed commit (a
            # full disk) lost its batch, and the member must not go on as if it held those
            # writes; its WAL replays them on restart (etcd's backend exits the process here)
            self._compact_step()
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
                self.ready.set()
                break
            except errors.PetcdError as exc:
                log.warning("publishing member attributes failed (%s); retrying", exc)
                await self.clock.sleep(0.5)
        if self.role == StateType.LEADER and self.membership.cluster_version != CLUSTER_VERSION:
            await self._propose_quietly(
                serverpb.InternalRequest(cluster_version_set=serverpb.ClusterVersionSet(ver=CLUSTER_VERSION))
            )

    # -- proposals --------------------------------------------------------------------

    async def propose(self, req: serverpb.InternalRequest) -> Any:
        """Propose a request through raft and return the applied result (or raise)."""
        if self._stopping:
            raise errors.StoppedError()
        req_id = self.idgen.next()
        req.header.id = req_id
        authserver.stamp(req.header, self.auth_store)
        data = req.SerializeToString()
        if len(data) > self.settings.max_request_bytes:
            raise errors.RequestTooLargeError()
        result = await self._propose_and_wait(req_id, self.raft.propose, data)
        if isinstance(result, BaseException):
            raise result
        return result

    async def propose_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Propose a membership change and wait until it is applied."""
        if self._stopping:
            raise errors.StoppedError()
        cc.id = self.idgen.next()
        await self._propose_and_wait(cc.id, self.raft.propose_conf_change, cc)

    async def _propose_and_wait(self, req_id: int, submit: Callable[[_P], None], payload: _P) -> Any:
        """submit(payload) to raft, waiting for a leader while there is none, then wait until the
        apply loop triggers req_id; one request timeout covers both."""
        fut = self.wait.register(req_id)
        started = self.clock.now()
        deadline = started + self.settings.request_timeout
        self.proposals_pending += 1
        try:
            while True:
                try:
                    submit(payload)
                    break
                except NoLeaderError:
                    await self.await_leader_change(deadline)
                except ProposalDroppedError:
                    self.proposals_failed += 1
                    raise errors.TooManyRequestsError() from None
                except ConfChangeError as exc:
                    raise errors.ConfChangeRejectedError(str(exc)) from None
            self.wait.expire_at(req_id, deadline)
            return await fut
        except TimeoutError:
            self.proposals_failed += 1
            raise timeout_error(self, started) from None
        finally:
            self.proposals_pending -= 1
            self.wait.cancel(req_id)

    def on_conf_change(self, cc: raftpb.ConfChange) -> None:
        """A newly applied conf change (not a replay)."""
        if cc.type == raftpb.ConfChangeRemoveNode and cc.node_id == self.member_id:
            self._stop_removed()

    def _stop_removed(self) -> None:
        # etcd stops (and its process exits 0) with these two warnings, whether it applied its own
        # removal or a peer refused it as removed first
        if self._removed:
            return
        self._removed = True
        log.warning("this member (%x) was removed from the cluster; stopping: "
                    "the member has been permanently removed from the cluster", self.member_id)
        log.warning("the data dir used by this member (%s) must be removed", self.settings.data_dir)
        asyncio.get_running_loop().create_task(self.stop())

    async def await_leader_change(self, deadline: float) -> None:
        """Wait until the leader changes (TimeoutError at deadline on the clock)."""
        remaining = deadline - self.clock.now()
        if remaining <= 0:
            raise TimeoutError
        await wait_for(self.clock, self._leader_changed.wait(), remaining)

    # -- linearizable reads -----------------------------------------------------------

    async def linearizable_read(self) -> None:
        """Return once this member has applied everything committed before the call."""
        if self._stopping or self.fatal is not None:
            raise errors.StoppedError()
        await self.reads.wait()

    async def wait_applied(self, index: int) -> None:
        """Return once this member has applied ``index`` (RequestTimeoutError after the request
        timeout): a simple token is only known here once its Authenticate entry is applied."""
        if index <= self.applied_index:
            return
        try:
            await wait_for(self.clock, self.reads.wait_applied(index), self.settings.request_timeout)
        except TimeoutError:
            raise errors.RequestTimeoutError() from None

    # -- KV API -----------------------------------------------------------------------

    def header(self, revision: int | None = None) -> pb.ResponseHeader:
        return pb.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.store.rev if revision is None else revision,
            raft_term=self.term,
        )

    def fill_header(self, h: pb.ResponseHeader) -> None:
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.term

    def _check_readable(self) -> None:
        """Called with nothing awaited between it and the read: after a failed fsync or backend
        commit the index may be ahead of what the backend holds until stop() is done, so
        nothing is read any more (also by a read that was waiting when it happened)."""
        if self.fatal is not None:
            raise errors.StoppedError()

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        # a serializable read is answered from this member's store at once, as etcd does: its
        # client URLs are not served before the member is ready (petcd.server.main), its peer URL is
        if not r.serializable:
            await self.linearizable_read()
        self._check_readable()
        # read without raft: checked here, and the answer dropped if the auth store moved
        # while it was read (etcd's doSerialize)
        store = self.auth_store
        info = authserver.caller_info(store)
        auth.check_range(store, info, r)
        resp = do_range(self.store, r, self.store.rev)
        auth.check_read_still_current(store, info)
        self.fill_header(resp.header)
        return resp

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        await self.check_quota(quota.put_cost(r))
        resp: pb.PutResponse = await self.propose(serverpb.InternalRequest(put=r))
        self.fill_header(resp.header)
        return resp

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        resp: pb.DeleteRangeResponse = await self.propose(serverpb.InternalRequest(delete_range=r))
        self.fill_header(resp.header)
        return resp

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        if txn_is_read_only(r):
            # answered locally after a read index, like a range
            await self.linearizable_read()
            self._check_readable()
            store = self.auth_store
            info = authserver.caller_info(store)
            auth.check_txn(store, info, r)
            resp = self.kv.read_only_txn(r)
            auth.check_read_still_current(store, info)
        else:
            if txn_has_put(r):
                await self.check_quota(quota.txn_cost(r))
            resp = await self.propose(serverpb.InternalRequest(txn=r))
        _fill_txn_headers(resp, self)
        return resp

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        resp: pb.CompactionResponse = await self.propose(serverpb.InternalRequest(compaction=r))
        if r.physical:
            while self.store.compaction_pending:
                # set by the apply loop when the last compaction batch is done
                self._compaction_done.clear()
                await self._compaction_done.wait()
        self.fill_header(resp.header)
        return resp

    async def check_quota(self, cost: int) -> None:
        """A request that does not fit the quota raises this member's NOSPACE alarm and is
        refused once the alarm is applied, so its client finds it listed (as etcd's front-door
        check). The size alone decides here (petcd.server.quota says why)."""
        if quota.fits(self.db_size_in_use, cost, self.settings.quota_backend_bytes):
            return
        req = serverpb.InternalRequest(
            alarm=pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=ALARM_NOSPACE)
        )
        try:
            await self.propose(req)
        except errors.PetcdError as exc:
            log.warning("raising the NOSPACE alarm failed: %s", exc)
        raise errors.NoSpaceError()

    async def _propose_quietly(self, req: serverpb.InternalRequest) -> None:
        try:
            await self.propose(req)
        except errors.PetcdError as exc:
            log.warning("proposal failed: %s", exc)


def _fill_txn_headers(resp: pb.TxnResponse, srv: EtcdServer) -> None:
    # etcd fills only the outer header; responses of the ops inside carry just the revision
    srv.fill_header(resp.header)


__all__ = ["ALARM_CORRUPT", "ALARM_NONE", "ALARM_NOSPACE", "EtcdServer", "Member"]
