"""Corruption checks: this member's KV hash against its peers', as etcd 3.5's
``--experimental-initial-corrupt-check`` and ``--experimental-corrupt-check-time``.

* The initial check runs before the member starts raft, only when it already has data: it hashes
  its store at its current revision and asks every peer for the hash at that revision. A peer with
  the same compaction revision and another hash is a mismatch, and any mismatch stops the member
  from starting ("<id> found data inconsistency with peers"). Peers that cannot answer (down, behind
  this member, already compacted past it) are logged and skipped, as in etcd.
* The periodic check runs on the leader only, once per interval. It hashes its store, asks the
  peers for the hash at that revision, waits for a linearizable read barrier and hashes again. Then
  it raises the CORRUPT alarm (through raft, so every member refuses writes from then on) for:
  itself, if its own two hashes differ at the same revision and compaction revision; a follower
  whose revision or compaction revision is ahead of the leader's; a follower with the leader's
  first compaction revision and another hash. At most one alarm per check.

The peers' hashes come from a ``PeerHashes`` function, so this module needs no transport; the
peer layer provides one that calls each member's HashKV.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from petcd import errors
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.server")


class DataInconsistencyError(Exception):
    """The initial check found a peer whose data differs from this member's."""


@dataclass(frozen=True, slots=True)
class PeerHash:
    """One peer's answer to HashKV at a revision: ``hash``/``revision``/``compact_revision``, or
    ``failure`` (``"compacted"``, ``"future"`` or any other text) when it gave none."""

    member_id: int
    endpoints: tuple[str, ...]
    hash: int = 0
    revision: int = 0
    compact_revision: int = 0
    failure: str = ""


# (peers to ask: member id -> peer URLs, revision) -> one PeerHash per peer
PeerHashes = Callable[[dict[int, list[str]], int], Awaitable[list[PeerHash]]]


class CorruptionMonitor:
    def __init__(self, server: EtcdServer, peer_hashes: PeerHashes) -> None:
        self._srv = server
        self._peer_hashes = peer_hashes

    def _peers(self) -> dict[int, list[str]]:
        srv = self._srv
        return {m.id: list(m.peer_urls) for m in srv.membership.ordered() if m.id != srv.member_id}

    async def initial_check(self) -> None:
        """Raises DataInconsistencyError on a mismatch with any peer."""
        srv = self._srv
        log.info("starting initial corruption check (local member %x)", srv.member_id)
        h, rev, compact = srv.store.hash_kv(0)
        mismatches = 0
        for p in await self._peer_hashes(self._peers(), rev):
            if p.failure == "future":
                log.warning("cannot fetch hash from slow remote peer %x (local revision %d)", p.member_id, rev)
            elif p.failure == "compacted":
                log.warning("cannot fetch hash from remote peer %x; local member is behind (revision %d)",
                            p.member_id, rev)
            elif p.failure:
                log.warning("cannot fetch hash from remote peer %x %s: %s", p.member_id,
                            ",".join(p.endpoints), p.failure)
            elif p.hash != h:
                if p.compact_revision == compact:
                    log.warning("found different hash values from remote peer %x: local hash %d at revision "
                                "%d (compacted at %d), remote hash %d at revision %d (compacted at %d)",
                                p.member_id, h, rev, compact, p.hash, p.revision, p.compact_revision)
                    mismatches += 1
                else:
                    log.warning("found different compact revision values from remote peer %x: local %d, "
                                "remote %d", p.member_id, compact, p.compact_revision)
        if mismatches:
            raise DataInconsistencyError(f"{srv.member_id:x} found data inconsistency with peers")
        log.info("initial corruption checking passed; no corruption (local member %x)", srv.member_id)

    async def periodic_check(self) -> int | None:
        """One leader check; returns the member the CORRUPT alarm was raised for, if any."""
        srv = self._srv
        h, rev, compact = srv.store.hash_kv(0)
        peers = await self._peer_hashes(self._peers(), rev)
        await srv.linearizable_read()
        h2, rev2, compact2 = srv.store.hash_kv(0)
        suspect: int | None = None
        if h2 != h and rev2 == rev and compact2 == compact:
            log.warning("found hash mismatch on this member: hash %d then %d at revision %d", h, h2, rev)
            suspect = srv.member_id
        checked = 0
        for p in peers:
            if p.failure:
                continue
            checked += 1
            if suspect is not None:
                continue
            if p.revision > rev2:
                log.warning("revision from follower %x (%d) must be less than or equal to leader's (%d)",
                            p.member_id, p.revision, rev2)
                suspect = p.member_id
            elif p.compact_revision > compact2:
                log.warning("compact revision from follower %x (%d) must be less than or equal to leader's (%d)",
                            p.member_id, p.compact_revision, compact2)
                suspect = p.member_id
            elif p.compact_revision == compact and p.hash != h:
                log.warning("same compact revision then hashes must match: leader hash %d, follower %x hash %d "
                            "(compaction revision %d)", h, p.member_id, p.hash, compact)
                suspect = p.member_id
        log.info("finished peer corruption check (%d peers checked)", checked)
        if suspect is not None:
            await self._raise_alarm(suspect)
        return suspect

    async def _raise_alarm(self, member_id: int) -> None:
        alarm = pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=member_id, alarm=pb.CORRUPT)
        await self._srv.propose(serverpb.InternalRequest(alarm=alarm))

    async def run(self, interval: float) -> None:
        """The periodic check every ``interval`` seconds while this member leads, until cancelled."""
        srv = self._srv
        log.info("enabled corruption checking (local member %x, interval %gs)", srv.member_id, interval)
        while True:
            await srv.clock.sleep(interval)
            if srv.leader != srv.member_id:
                continue
            try:
                await self.periodic_check()
            except errors.PetcdError as exc:
                log.warning("failed to check hash KV: %s", exc)
