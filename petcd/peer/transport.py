"""PeerTransport: raft messages and snapshots between this member and the others.

Outgoing, ``send(msgs)`` never waits: each message goes to its peer's bounded queue (see
``petcd.peer.link``), MsgSnap to a snapshot transfer. Incoming, the ``RaftTransportServicer``
on the member's gRPC server (and, for framed streams on plain-text peer URLs, a
``FrameReceiver`` from ``frame_receiver``) checks every request's cluster and member ids and
hands the messages to ``on_messages`` and received snapshots to ``on_snapshot``.

Every callback runs on the event loop; none may block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

import petcd
from petcd.clock import Clock, LoopClock
from petcd.peer.config import PeerConfig, PeerStats
from petcd.peer.dial import PeerDialer
from petcd.peer.frames import FrameReceiver
from petcd.peer.link import LinkEnv, PeerLink
from petcd.peer.snapshot import remove_partial_files
from petcd.peer.wire import Rejection, channel_options, check_identity
from petcd.proto.peerpb import peer_pb2 as peerpb
from petcd.proto.peerpb import peer_pb2_grpc as peer_grpc
from petcd.proto.raftpb import raft_pb2 as raftpb

log = logging.getLogger("petcd.peer")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    cluster_id: int
    member_id: int
    server_version: str
    cluster_version: str
    rtt: float


class PeerTransport:
    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        on_messages: Callable[[list[raftpb.Message]], None],
        on_snapshot: Callable[[raftpb.Message, str], Awaitable[None]],
        report_unreachable: Callable[[int], None],
        report_snapshot: Callable[[int, bool], None],
        snapshot_source: Callable[[raftpb.Message], Awaitable[str]],
        snapshot_dir: str | Path,
        *,
        config: PeerConfig | None = None,
        on_removed: Callable[[int], None] | None = None,
        cluster_version: Callable[[], str] = lambda: "",
        server_version: str = petcd.__version__,
        clock: Clock | None = None,
        rand: random.Random | None = None,
        dialer: PeerDialer | None = None,
    ) -> None:
        """
        on_messages(msgs): messages received from one peer, in the order it sent them; step them.
        on_snapshot(msg, path): a MsgSnap whose database file is complete and fsynced at ``path``
            (in ``snapshot_dir``; the callee takes ownership of the file); install it and step msg.
            Raising fails the transfer (the sender's raft gets report_snapshot(failed)).
        report_unreachable(peer) / report_snapshot(peer, failed): to RawNode's methods of those names;
            always called from a fresh event-loop callback, never from inside send().
        snapshot_source(msg): the path of a stable copy of the backend to send with ``msg``; the
            transport deletes it afterwards unless ``config.delete_sent_snapshots`` is False.
        on_removed(peer): a peer answered PERMISSION_DENIED: this member was removed from the cluster
            (repeats on every retry, about every ``config.backoff_max`` seconds: make it idempotent).
        clock: for ``active_since``, log rate limits and backoffs (a LoopClock if None);
            rand: backoff jitter (a fresh Random if None).
        dialer: builds the channels to peers (TLS for https peer URLs); plain channels if None.
        """
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.config = config or PeerConfig()
        self.snapshot_dir = Path(snapshot_dir)
        self.server_version = server_version
        self.cluster_version = cluster_version
        self.clock: Clock = clock if clock is not None else LoopClock()
        self._on_messages = on_messages
        self._on_snapshot = on_snapshot
        self._env = LinkEnv(
            member_id=member_id,
            cluster_id=cluster_id,
            config=self.config,
            clock=self.clock,
            rand=rand or random.Random(),
            # deferred: send() runs inside the raft driver's Ready handling, and raft must not be
            # re-entered from there
            report_unreachable=lambda peer: _defer(report_unreachable, peer),
            report_snapshot=lambda peer, failed: _defer(report_snapshot, peer, failed),
            snapshot_source=snapshot_source,
            snapshot_sent=self._snapshot_sent,
            on_removed=on_removed,
            dialer=dialer or PeerDialer(),
        )
        self._links: dict[int, PeerLink] = {}
        self._removed: set[int] = set()
        self._inbound: dict[int, int] = {}  # sender -> open Send streams
        self._received: dict[int, int] = {}
        self._unknown_drops = 0
        self._started = False
        self._stopped = False
        self._background: set[asyncio.Task[None]] = set()
        self._frame_receivers: set[FrameReceiver] = set()

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.snapshot_dir.mkdir, parents=True, exist_ok=True)
        n = await asyncio.to_thread(remove_partial_files, self.snapshot_dir)
        if n:
            log.info("removed %d partial snapshot file(s) from %s", n, self.snapshot_dir)
        self._started = True
        for link in self._links.values():
            link.start()

    async def stop(self) -> None:
        """Cancel every stream and transfer and close the channels; incoming requests are refused."""
        self._stopped = True
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)
        for r in list(self._frame_receivers):
            r.close()
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- membership ---------------------------------------------------------------------

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> bool:
        """Start talking to ``peer_id``; an existing peer gets its URLs updated. False (and
        ignored) for this member itself and for removed members (a replayed conf change)."""
        if peer_id == self.member_id or self._stopped:
            return False
        if peer_id in self._removed:
            log.warning("not adding peer %x: it was removed from the cluster", peer_id)
            return False
        if peer_id in self._links:
            self.update_peer(peer_id, urls)
            return True
        link = PeerLink(peer_id, list(urls), self._env)
        self._links[peer_id] = link
        if self._started:
            link.start()
        log.info("added peer %x at %s", peer_id, ", ".join(urls))
        return True

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        """New URLs for a peer (queued messages go to the new address). An unknown peer is
        added; a removed one stays removed, so replaying old conf changes is harmless."""
        link = self._links.get(peer_id)
        if link is None:
            self.add_peer(peer_id, urls)
            return
        if link.set_urls(list(urls)):
            self._spawn(link.restart())

    def remove_peer(self, peer_id: int) -> None:
        """Stop talking to ``peer_id`` and refuse its requests from now on (ids are never reused)."""
        self._removed.add(peer_id)
        link = self._links.pop(peer_id, None)
        if link is not None:
            self._spawn(link.close())
            log.info("removed peer %x", peer_id)

    def mark_removed(self, peer_ids: Iterable[int]) -> None:
        """Remember members removed before this process started (from the membership store)."""
        for p in peer_ids:
            self.remove_peer(p)

    def peers(self) -> dict[int, list[str]]:
        return {p: list(link.urls) for p, link in self._links.items()}

    def channel_to(self, peer_id: int) -> grpc.aio.Channel | None:
        """The channel of the link to ``peer_id`` (None for an unknown peer), for calls other
        than the raft stream, such as requests forwarded to the leader (petcd.peer.forward)."""
        link = self._links.get(peer_id)
        return None if link is None else link.channel

    def is_removed(self, peer_id: int) -> bool:
        return peer_id in self._removed

    # -- sending ------------------------------------------------------------------------

    def send(self, msgs: Sequence[raftpb.Message]) -> None:
        """Queue ``msgs`` for their peers; never blocks. Lost messages are raft's to resend."""
        links = self._links
        for m in msgs:
            link = links.get(m.to)
            if link is None:
                if m.to != self.member_id:
                    self._unknown_drops += 1
                    log.debug("dropping %s to unknown peer %x", raftpb.MessageType.Name(m.type), m.to)
                if m.type == raftpb.MsgSnap:
                    self._env.report_snapshot(m.to, True)
                continue
            if m.type == raftpb.MsgSnap:
                link.send_snapshot(m)
            else:
                link.enqueue(m)

    async def _snapshot_sent(self, path: str) -> None:
        if self.config.delete_sent_snapshots:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, path)

    # -- receiving (called by RaftTransportServicer and FrameReceiver) ---------------------

    def frame_receiver(self, max_frame_bytes: int) -> FrameReceiver:
        """The protocol for one inbound framed stream (petcd.peer.frames) on a connection the
        peer port took; frames over ``max_frame_bytes`` are refused."""
        r = FrameReceiver(self, max_frame_bytes, self._frame_receivers.discard)
        self._frame_receivers.add(r)
        return r

    def check_request(self, cluster_id: int, sender_id: int, receiver_id: int) -> Rejection | None:
        if self._stopped:
            return Rejection(grpc.StatusCode.UNAVAILABLE, f"member {self.member_id:x} is stopping")
        return check_identity(
            self.cluster_id, self.member_id, self._removed, cluster_id, sender_id, receiver_id
        )

    def deliver(self, sender: int, msgs: list[raftpb.Message]) -> None:
        self._received[sender] = self._received.get(sender, 0) + len(msgs)
        try:
            self._on_messages(msgs)
        except Exception:
            # one bad message must not cut the stream raft relies on
            log.exception("stepping %d message(s) from %x failed", len(msgs), sender)

    async def install_snapshot(self, msg: raftpb.Message, path: Path) -> None:
        await self._on_snapshot(msg, str(path))

    def inbound_opened(self, sender: int) -> None:
        self._inbound[sender] = self._inbound.get(sender, 0) + 1
        self.peer_alive(sender)

    def peer_alive(self, sender: int) -> None:
        """``sender`` reached us (a stream or a probe): our link to it need not wait out its
        backoff any more (a member that restarted is heard from the leader at once)."""
        link = self._links.get(sender)
        if link is not None:
            link.kick()

    def inbound_closed(self, sender: int) -> None:
        n = self._inbound.get(sender, 0) - 1
        if n > 0:
            self._inbound[sender] = n
        else:
            self._inbound.pop(sender, None)

    # -- health and stats ---------------------------------------------------------------

    def active_since(self, peer_id: int) -> float | None:
        """Clock time since which the stream to ``peer_id`` has been up, or None if it is down."""
        link = self._links.get(peer_id)
        return None if link is None else link.active_since

    def stats(self) -> dict[int, PeerStats]:
        out: dict[int, PeerStats] = {}
        for p, link in self._links.items():
            out[p] = replace(link.stats, messages_received=self._received.get(p, 0))
        return out

    def inbound_peers(self) -> set[int]:
        """Peers with an accepted stream into this member right now."""
        return set(self._inbound)

    async def probe(self, peer_id: int, timeout: float = 2.0) -> ProbeResult:
        """Ask a known peer who it is; raises grpc.aio.AioRpcError when it refuses or is down."""
        link = self._links.get(peer_id)
        if link is None:
            raise KeyError(f"unknown peer {peer_id:x}")
        return await self._probe(link.urls[0], peer_id, timeout)

    async def probe_url(self, url: str, timeout: float = 2.0) -> ProbeResult:
        """Ask whoever serves ``url`` for its ids (cluster id still checked if we know it)."""
        return await self._probe(url, 0, timeout)

    async def _probe(self, url: str, peer_id: int, timeout: float) -> ProbeResult:
        req = peerpb.ProbeRequest(cluster_id=self.cluster_id, sender_id=self.member_id, receiver_id=peer_id)
        dialer = self._env.dialer
        await dialer.refresh(url)
        async with dialer.channel(url, channel_options()) as ch:
            stub = peer_grpc.RaftTransportStub(ch)  # type: ignore[no-untyped-call]
            started = self.clock.now()
            resp: peerpb.ProbeResponse = await stub.Probe(req, timeout=timeout)
            rtt = self.clock.now() - started
        return ProbeResult(resp.cluster_id, resp.member_id, resp.server_version, resp.cluster_version, rtt)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        t = asyncio.get_running_loop().create_task(run())
        self._background.add(t)
        t.add_done_callback(self._background.discard)


def _defer(fn: Callable[..., None], *args: object) -> None:
    asyncio.get_running_loop().call_soon(fn, *args)
