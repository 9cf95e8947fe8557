"""The simulated peer network between whole members: one event loop, virtual time, one seeded RNG.

Each member's end is a :class:`SimTransport` (``petcd.server.peering.Transport``), made by the
factory ``SimNet.transport()`` hands to ``build_member``. A raft message leaving a member meets
its fate at once: dropped (random loss, a blocked link, a peer that is down), or delivered once or
twice (a forwarded proposal only once), each copy after its own random delay on the virtual clock (so messages reorder, unless the
seed keeps links FIFO as gRPC streams are). Copies travel encoded, as on the wire, so a receiver
never shares an object with its sender. A delivery finds out again whether the link is still up.

A MsgSnap carries the sender's backend: its ``snapshot_source`` makes the copy, the file is copied
into the receiver's incoming dir after the delay and handed to its ``on_snapshot``; the sender's
raft hears ``report_snapshot`` (failed or not), as over the real transport. Reports to raft are
always deferred to a fresh loop callback (raft must not be re-entered from ``send``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from petcd.clock import ManualClock
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.server.peering import PeerHandlers


@dataclass
class NetParams:
    drop: float = 0.0
    dup: float = 0.0
    delay_min: float = 0.001  # seconds of virtual time
    delay_max: float = 0.005
    fifo: bool = True  # per-link order kept (a gRPC stream), else copies overtake each other
    unreachable_report: float = 0.5  # chance a drop on a blocked link is reported to raft


@dataclass
class NetStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    delivered: int = 0
    snapshots_sent: int = 0
    snapshots_failed: int = 0
    by_type: dict[int, int] = field(default_factory=dict)


class SimNet:
    def __init__(self, clock: ManualClock, rng: random.Random, params: NetParams,
                 trace: Callable[[str], None]) -> None:
        self.clock = clock
        self.rng = rng
        self.params = params
        self.trace = trace
        self.handlers: dict[int, PeerHandlers] = {}
        self.up: set[int] = set()
        self.blocked: set[tuple[int, int]] = set()
        self.stats = NetStats()
        # per link: the virtual time the last copy is due, so FIFO links never reorder
        self._last_due: dict[tuple[int, int], float] = {}
        # snapshot transfers in flight -> (sender, receiver)
        self._tasks: dict[asyncio.Task[None], tuple[int, int]] = {}
        # every message sent: (time, message), for tests that count heartbeats and the like
        self.log: list[tuple[float, raftpb.Message]] = []
        self.keep_log = False

    def transport(self) -> Callable[[PeerHandlers], SimTransport]:
        def make(h: PeerHandlers) -> SimTransport:
            self.handlers[h.member_id] = h
            return SimTransport(self, h)

        return make

    def count(self, kind: int, sender: int, since: float) -> dict[int, int]:
        """Messages of ``kind`` sent by ``sender`` since then, per receiver (needs keep_log)."""
        out: dict[int, int] = {}
        for at, m in self.log:
            if at >= since and m.type == kind and getattr(m, "from") == sender:
                out[m.to] = out.get(m.to, 0) + 1
        return out

    # -- partitions -----------------------------------------------------------------------

    def split(self, side_a: Iterable[int], side_b: Iterable[int], one_way: bool = False) -> None:
        a, b = list(side_a), list(side_b)
        for x in a:
            for y in b:
                self.blocked.add((x, y))
                if not one_way:
                    self.blocked.add((y, x))

    def heal(self) -> None:
        self.blocked.clear()

    def calm(self) -> None:
        """No more loss or duplicates, short delays: for the final convergence."""
        self.heal()
        self.params.drop = 0.0
        self.params.dup = 0.0
        self.params.delay_max = min(self.params.delay_max, 0.005)

    def link_up(self, frm: int, to: int) -> bool:
        return frm in self.up and to in self.up and (frm, to) not in self.blocked

    # -- sending --------------------------------------------------------------------------

    def send(self, sender: PeerHandlers, msgs: Sequence[raftpb.Message]) -> None:
        p = self.params
        loop = asyncio.get_running_loop()
        for m in msgs:
            frm, to = sender.member_id, m.to
            self.stats.sent += 1
            self.stats.by_type[m.type] = self.stats.by_type.get(m.type, 0) + 1
            if self.keep_log:
                self.log.append((self.clock.now(), m))
            if m.type == raftpb.MsgSnap:
                task = asyncio.ensure_future(self._send_snapshot(sender, m))
                self._tasks[task] = (frm, to)
                task.add_done_callback(self._done)
                continue
            if not self.link_up(frm, to):
                self.stats.dropped += 1
                if to not in self.up or self.rng.random() < p.unreachable_report:
                    loop.call_soon(sender.report_unreachable, to)
                continue
            if self.rng.random() < p.drop:
                self.stats.dropped += 1
                continue
            data = m.SerializeToString()
            # a forwarded proposal is never sent twice: raft appends each copy (as etcd's does),
            # so the write would be applied twice, and petcd's transport (as etcd's) never repeats
            # a message; every other message raft must take twice
            copies = 2 if p.dup and m.type != raftpb.MsgProp and self.rng.random() < p.dup else 1
            self.stats.duplicated += copies - 1
            for _ in range(copies):
                if p.delay_max <= 0:  # on the next loop turn, whether or not the clock moves
                    loop.call_soon(self._deliver, frm, to, data)
                else:
                    self.clock.call_later(self._delay(frm, to), lambda d=data, f=frm, t=to: self._deliver(f, t, d))

    def _delay(self, frm: int, to: int) -> float:
        p = self.params
        delay = self.rng.uniform(p.delay_min, p.delay_max)
        if not p.fifo:
            return delay
        now = self.clock.now()
        due = max(now + delay, self._last_due.get((frm, to), 0.0))
        self._last_due[(frm, to)] = due
        return due - now

    def _deliver(self, frm: int, to: int, data: bytes) -> None:
        if not self.link_up(frm, to):
            self.stats.dropped += 1
            return
        h = self.handlers.get(to)
        if h is None:
            return
        self.stats.delivered += 1
        h.on_messages([raftpb.Message.FromString(data)])

    async def _send_snapshot(self, sender: PeerHandlers, m: raftpb.Message) -> None:
        frm, to = sender.member_id, m.to
        index = m.snapshot.metadata.index
        failed = True
        path: str | None = None
        try:
            if not self.link_up(frm, to) or self.rng.random() < self.params.drop:
                self.trace(f"snapshot {index} {frm:x}->{to:x} lost")
                return
            path = await sender.snapshot_source(m)
            await self.clock.sleep(self._delay(frm, to))
            target = self.handlers.get(to)
            if target is None or not self.link_up(frm, to):
                self.trace(f"snapshot {index} {frm:x}->{to:x} lost in flight")
                return
            target.snapshot_dir.mkdir(parents=True, exist_ok=True)
            dest = target.snapshot_dir / f"from-{frm:x}-{index:016x}.db"
            shutil.copyfile(path, dest)
            await target.on_snapshot(raftpb.Message.FromString(m.SerializeToString()), str(dest))
            failed = False
            self.stats.snapshots_sent += 1
            self.trace(f"snapshot {index} {frm:x}->{to:x} installed")
        finally:
            if failed:
                self.stats.snapshots_failed += 1
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            # a sender that crashed meanwhile has a new raft node; the old one is gone
            if self.handlers.get(frm) is sender:
                asyncio.get_running_loop().call_soon(sender.report_snapshot, to, failed)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            self.trace(f"snapshot transfer failed: {task.exception()!r}")

    def cancel_transfers_of(self, member_id: int) -> None:
        """A crashed member's transfers, sent or being received, die with it."""
        for task, ends in list(self._tasks.items()):
            if member_id in ends:
                task.cancel()


class SimTransport:
    """One member's end of the SimNet."""

    def __init__(self, net: SimNet, h: PeerHandlers) -> None:
        self._net = net
        self._h = h
        self._peers: dict[int, list[str]] = {}
        self._removed: set[int] = set()
        self._since = 0.0

    async def start(self) -> None:
        self._since = self._net.clock.now()
        self._net.up.add(self._h.member_id)

    async def stop(self) -> None:
        self._net.up.discard(self._h.member_id)

    def send(self, msgs: Sequence[raftpb.Message]) -> None:
        if self._h.member_id in self._net.up:
            self._net.send(self._h, [m for m in msgs if m.to not in self._removed])

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> bool:
        if peer_id == self._h.member_id or peer_id in self._removed:
            return False
        self._peers[peer_id] = list(urls)
        return True

    def remove_peer(self, peer_id: int) -> None:
        self._removed.add(peer_id)
        self._peers.pop(peer_id, None)

    def mark_removed(self, peer_ids: Iterable[int]) -> None:
        for p in peer_ids:
            self.remove_peer(p)

    def peers(self) -> dict[int, list[str]]:
        return dict(self._peers)

    def active_since(self, peer_id: int) -> float | None:
        if peer_id in self._peers and self._net.link_up(self._h.member_id, peer_id):
            return self._since
        return None
