"""Whole members in the simulator: built by the normal bootstrap (``build_member``) on a shared
virtual clock, with real WAL and LMDB files in a temp dir, joined by the SimNet; crashed and
restarted from their data dirs.

The clock (:class:`SimClock`) runs blocking work inline, as every ManualClock does, and adds a
seeded virtual delay before the work is acknowledged, so a slow disk reorders events the way a
thread would, but the same way on every run of the seed.

A crash is a process crash (kill -9): the member's tasks are cancelled where they stand and its
open backend batch is aborted (never committed), while whatever its WAL and backend wrote before
stays on disk. A crash with power loss also loses the WAL bytes written after its last sync: the
lane sees every WAL job, and a save raft did not ask to sync (``must_sync`` false: only the
commit index moved) leaves its bytes unsynced until the next synced job. Those bytes are cut at
a random point (zeroed where the segment is preallocated, as a disk that never got them). The
members run with --unsafe-no-fsync for speed: the model, not the disk, decides what survives.
LMDB batches count as durable once committed (sync=True in production; not simulated further).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from petcd.clock import IoLane, ManualClock
from petcd.config import settings_from_flags
from petcd.config.settings import ServerSettings
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.apply import Applier
from petcd.server.bootstrap import Member
from petcd.server.etcdserver import EtcdServer
from petcd.server.member import build_member
from petcd.wal import WAL

from .net import SimNet
from .params import SimParams

T = TypeVar("T")
CLUSTER_ID = 0x5E1F


class SimLane:
    """A WAL lane on virtual time: the job runs at once (so jobs stay in order), its result is
    handed back after a seeded delay that never lets a later job overtake an earlier one."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._last_due = 0.0
        self._stopped = False
        self.wal: WAL | None = None
        self.synced: tuple[str, int] | None = None  # (segment, offset) the WAL has made durable

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._stopped:
            raise RuntimeError("the I/O lane is stopped")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, WAL):
            self.wal = owner
        try:
            result = fn(*args)
        except Exception as exc:
            fut.set_exception(exc)
            return fut
        finally:
            self._note_sync(fn, args)
        delay = self._clock.disk_delay()
        if delay <= 0 and self._last_due <= self._clock.now():
            fut.set_result(result)
            return fut
        due = max(self._clock.now() + delay, self._last_due)
        self._last_due = due

        def done() -> None:
            if not fut.done():
                fut.set_result(result)

        self._clock.call_later(due - self._clock.now(), done)
        return fut

    def _note_sync(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self.wal is None:
            return
        end = wal_end(self.wal)
        unsynced_save = getattr(fn, "__func__", None) is WAL.save and len(args) > 2 and not args[2]
        # a save that cut a new segment synced the old one and the new one's header
        if not unsynced_save or self.synced is None or self.synced[0] != end[0]:
            self.synced = end

    def lose_unsynced(self, rng: random.Random) -> int:
        """After a crash (the WAL closed): cut the bytes written since the last sync at a random
        point, as a power loss would. Returns how many bytes were lost."""
        if self.wal is None or self.synced is None:
            return 0
        path, synced = self.synced
        cur_path, cur = wal_end(self.wal)
        if cur_path != path or cur <= synced:
            return 0
        cut = rng.randint(synced, cur)
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            if size > cur:  # preallocated: the lost bytes read as zeros
                f.seek(cut)
                f.write(b"\0" * (cur - cut))
            else:
                f.truncate(cut)
        return cur - cut

    def stop(self) -> None:
        self._stopped = True


def wal_end(wal: WAL) -> tuple[str, int]:
    """The WAL's last segment and its write offset (private to the WAL; the simulator's view)."""
    return wal._segments[-1].path, wal._offset


class SimClock(ManualClock):
    def __init__(self, rng: random.Random, disk_latency_max: float) -> None:
        super().__init__()
        self._rng = rng
        self._disk_latency_max = disk_latency_max

    def disk_delay(self) -> float:
        return self._rng.uniform(0.0, self._disk_latency_max) if self._disk_latency_max > 0 else 0.0

    def io_lane(self, name: str) -> IoLane:
        return SimLane(self)

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        result = fn(*args)
        delay = self.disk_delay()
        if delay > 0:
            await self.sleep(delay)
        return result


class Divergence(AssertionError):
    """Two members applied different things at one index."""


class AppliedLog:
    """What each index applied to, across all members: the request and what it produced. A
    member applying an index again after a crash (its backend lost the open batch) must produce
    the same again."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[bytes, bytes, int]] = {}  # index -> (request, result, first member)
        self.applies = 0

    def step(self, member_id: int) -> Callable[[Applier], Applier]:
        log = self

        class Record:
            def __init__(self, nxt: Applier) -> None:
                self._next = nxt

            def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
                try:
                    result = self._next.apply(req, index)
                except Exception as exc:
                    log.record(member_id, index, req, f"{type(exc).__name__}: {exc}".encode())
                    raise
                log.record(member_id, index, req, _digest(result))
                return result

        return Record

    def record(self, member_id: int, index: int, req: serverpb.InternalRequest, result: bytes) -> None:
        self.applies += 1
        got = (req.SerializeToString(deterministic=True), result)
        seen = self.entries.get(index)
        if seen is None:
            self.entries[index] = (got[0], got[1], member_id)
        elif seen[:2] != got:
            what = "request" if seen[0] != got[0] else "result"
            raise Divergence(f"index {index}: member {member_id:x} applied a different {what} than member "
                             f"{seen[2]:x} ({req.WhichOneof('request')})")


def _digest(result: Any) -> bytes:
    if hasattr(result, "SerializeToString"):
        return hashlib.blake2b(result.SerializeToString(deterministic=True), digest_size=16).digest()
    return repr(result).encode()


class SimMember:
    """One member's identity and data dir, and the server running on it (None while down)."""

    def __init__(self, index: int, member_id: int, root: Path, params: SimParams, members: list[Member]) -> None:
        self.index = index
        self.id = member_id
        self.name = f"m{index}"
        self.data_dir = root / self.name
        self.settings: ServerSettings = settings_from_flags(
            [f"--name={self.name}", f"--data-dir={self.data_dir}", "--quota-backend-bytes=1073741824",
             f"--heartbeat-interval={params.heartbeat_ms}", f"--election-timeout={params.election_ms}",
             f"--snapshot-count={params.snapshot_count}",
             f"--experimental-snapshot-catchup-entries={params.catchup_entries}",
             f"--pre-vote={'true' if params.pre_vote else 'false'}",
             # what is written stays written on a process crash, fsync or not: no fsync is faster
             "--unsafe-no-fsync"],
            member_id=member_id, cluster_id=CLUSTER_ID, initial_members=members,
            initial_advertise_peer_urls=next(m.peer_urls for m in members if m.id == member_id),
        )
        self.server: EtcdServer | None = None
        # more apply steps for this member (after the recording one): tests plant faults here
        self.apply_steps: list[Callable[[Applier], Applier]] = []
        self.incarnation = 0
        self.down_since = 0.0

    @property
    def up(self) -> bool:
        return self.server is not None


async def _no_discovery(urls: list[str], members: list[Member]) -> tuple[int, int, list[Member]]:
    raise AssertionError("members of a new cluster ask nobody")


async def boot(m: SimMember, clock: SimClock, net: SimNet, log: AppliedLog, seed: int) -> EtcdServer:
    """Build the member with the normal bootstrap (a new one, or a restart from its data dir)."""
    m.incarnation += 1
    rand = random.Random(f"{seed}/{m.id}/{m.incarnation}")
    srv = await build_member(m.settings, clock, net.transport(), _no_discovery, rand, [log.step(m.id), *m.apply_steps])
    await srv.start()
    m.server = srv
    return srv


async def crash(m: SimMember, net: SimNet, power_loss: random.Random | None = None) -> int:
    """kill -9: nothing is flushed, the open backend batch is lost. With ``power_loss`` (its RNG)
    the WAL's unsynced tail is lost too; returns the WAL bytes lost."""
    srv = m.server
    assert srv is not None
    m.server = None
    net.up.discard(m.id)
    net.cancel_transfers_of(m.id)
    for t in srv._tasks:
        t.cancel()
    await srv.raft.stop()
    await srv.watch_syncer.stop()
    backend = srv.backend
    # the batch LMDB never committed is what the crash loses (Backend has no abort: a real
    # member never gives up a batch)
    with contextlib.suppress(Exception):
        if backend._wtxn is not None:
            backend._wtxn.abort()
            backend._end_batch(committed=False)
    backend.close()
    srv.raft.close()  # releases the WAL's lock so the next incarnation can open it
    # anything still holding the old server (a client call) must not reach its raft again
    srv._stopping = True
    lane = srv.raft._io
    if power_loss is not None and isinstance(lane, SimLane):
        return lane.lose_unsynced(power_loss)
    return 0
