"""One remote member as the sender sees it: its channel, its outgoing queue and the stream.

How it works. A single task per peer keeps one ``Send`` stream open. It opens the call, writes
a header-only batch and waits for the receiver's initial metadata, which the receiver sends
only after checking the cluster and member ids; from then on the peer is *active*. The task
then sleeps until messages are queued (or the call ends), takes everything queued up to the
batch byte cap and writes it as one ``MessageBatch``; messages that arrive during the write
go out together in the next batch. When the stream fails the task reports the peer
unreachable to raft, trims the queue to its newest messages, waits a capped exponential
backoff with jitter (reset once a stream was accepted), and opens a new one. With several
URLs, a failed connect moves on to the next. A peer that comes back shows itself by opening
its own stream to us (or probing us): ``kick`` then cuts the backoff short and redials on a
fresh channel (the old one may sit in gRPC's own reconnect backoff), so a restarted member
hears from the leader within a round trip, not after up to ``backoff_max``.

To an ``http://`` URL the stream is a framed one (petcd.peer.frames: the same batches as
length-prefixed frames on a TCP connection, accepted the same way, kept alive by pings) unless
that peer answered it with gRPC; ``https://`` and ``unix://`` URLs get the gRPC ``Send`` stream.

Snapshots go on their own ``SendSnapshot`` call over the channel, at most one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import grpc

from petcd.clock import Clock
from petcd.peer.config import PeerConfig, PeerStats
from petcd.peer.dial import PeerDialer
from petcd.peer.frames import FrameRefused, NotFramed, keep_alive, open_frame_stream
from petcd.peer.outqueue import OutQueue
from petcd.peer.snapshot import SnapshotTransferError, send_snapshot
from petcd.peer.wire import ACCEPTED_KEY, channel_options, grpc_target
from petcd.proto.peerpb import peer_pb2 as peerpb
from petcd.proto.peerpb import peer_pb2_grpc as peer_grpc
from petcd.proto.raftpb import raft_pb2 as raftpb

log = logging.getLogger("petcd.peer")

SendCall = grpc.aio.StreamUnaryCall[peerpb.MessageBatch, peerpb.SendAck]


class StreamEnded(Exception):
    """The receiver closed the stream without an error (it is shutting down)."""


@dataclass
class LinkEnv:
    """What every link shares with its transport."""

    member_id: int
    cluster_id: int
    config: PeerConfig
    clock: Clock
    rand: random.Random
    report_unreachable: Callable[[int], None]
    report_snapshot: Callable[[int, bool], None]
    snapshot_source: Callable[[raftpb.Message], Awaitable[str]]
    snapshot_sent: Callable[[str], Awaitable[None]]
    on_removed: Callable[[int], None] | None
    dialer: PeerDialer


def _checked(urls: list[str]) -> list[str]:
    """The URLs, each checked to name a peer address (ValueError if not)."""
    for u in urls:
        grpc_target(u)
    return list(urls)


@dataclass
class _LogLimiter:
    """At most one line per ``interval`` for a recurring condition; counts what it hid."""

    clock: Callable[[], float]
    interval: float
    _last: dict[str, float] = field(default_factory=dict)
    _hidden: dict[str, int] = field(default_factory=dict)

    def allow(self, key: str) -> int | None:
        """None to stay quiet, else how many lines were suppressed since the last one."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._hidden[key] = self._hidden.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._hidden.pop(key, 0)


class PeerLink:
    def __init__(self, peer_id: int, urls: list[str], env: LinkEnv) -> None:
        if not urls:
            raise ValueError(f"peer {peer_id:x} has no URLs")
        self.peer_id = peer_id
        self.env = env
        self.urls = list(urls)
        self._targets = _checked(urls)
        self._url_index = 0
        cfg = env.config
        self.queue = OutQueue(cfg.max_queue_messages, cfg.max_queue_bytes, cfg.max_queue_messages_down)
        self.stats = PeerStats()
        self.active_since: float | None = None
        self._wake = asyncio.Event()
        self._kicked = asyncio.Event()
        self._channel, self._channel_pin = self._new_channel()
        self._task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._snapshot_busy = False
        self._halting = False
        self._full_reported = False
        self._logs = _LogLimiter(env.clock.now, cfg.log_interval)
        self._accepted = False
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()  # old channels being closed after a redial
        self._header = peerpb.MessageBatch(
            cluster_id=env.cluster_id, sender_id=env.member_id, receiver_id=peer_id
        )
        self._grpc_only: set[str] = set()  # URLs whose peer answered a framed stream with gRPC

    # -- life cycle ---------------------------------------------------------------------

    def _new_channel(self) -> tuple[grpc.aio.Channel, tuple[bytes, str] | None]:
        """A channel to the current URL and the --peer-auto-tls certificate it trusts."""
        cfg = self.env.config
        opts = channel_options(cfg.keepalive_seconds, cfg.keepalive_timeout_seconds, cfg.backoff_max)
        url = self._targets[self._url_index]
        return self.env.dialer.channel(url, opts), self.env.dialer.pin(url)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel to this peer (replaced when its URLs change)."""
        return self._channel

    def _stub(self) -> peer_grpc.RaftTransportStub:
        return peer_grpc.RaftTransportStub(self._channel)  # type: ignore[no-untyped-call]

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-{self.peer_id:x}")

    async def close(self) -> None:
        """Stop for good: cancel the stream and any snapshot transfer, close the channel."""
        self._closed = True
        await self._halt()

    async def _halt(self) -> None:
        tasks = [t for t in (self._task, self._snapshot_task) if t is not None]
        # the flag stops the loop even if a cancellation gets lost inside a library call
        self._halting = True
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._halting = False
        self._task = None
        self._set_down()
        await self._channel.close(None)
        await asyncio.gather(*self._closing, return_exceptions=True)

    def set_urls(self, urls: list[str]) -> bool:
        """Point the link at new URLs (queued messages stay); True if :meth:`restart` is due."""
        targets = _checked(urls)
        if not targets:
            raise ValueError(f"peer {self.peer_id:x} has no URLs")
        self.urls = list(urls)
        if targets == self._targets:
            return False
        self._targets = targets
        self._url_index = 0
        return True

    async def restart(self) -> None:
        """Drop the stream and channel and connect again at the current URLs."""
        running = self._task is not None
        await self._halt()
        if self._closed:
            return
        self._channel, self._channel_pin = self._new_channel()
        if running:
            self.start()

    # -- sending ------------------------------------------------------------------------

    def enqueue(self, msg: raftpb.Message) -> None:
        if self.queue.put(msg):
            self._full_reported = False
        else:
            self.stats.messages_dropped += 1
            if self.queue.up and not self._full_reported:
                self._full_reported = True  # once per overflow, not once per dropped message
                hidden = self._logs.allow("full")
                if hidden is not None:
                    log.warning(
                        "dropping messages to peer %x: outgoing queue full (%d messages, %d bytes; %d overflows not logged)",
                        self.peer_id,
                        len(self.queue),
                        self.queue.nbytes,
                        hidden,
                    )
                # a peer that cannot keep up is as good as unreachable to the replication flow
                self.env.report_unreachable(self.peer_id)
        self._wake.set()

    async def _run(self) -> None:
        cfg = self.env.config
        delay = cfg.backoff_initial
        while not self._halting:
            self._accepted = False
            try:
                url = self._targets[self._url_index]
                await self.env.dialer.refresh(url)
                if self.env.dialer.pin(url) != self._channel_pin:
                    # --peer-auto-tls: the peer's certificate (re)pinned; the old channel trusts
                    # another one or none
                    await self._channel.close(None)
                    self._channel, self._channel_pin = self._new_channel()
                if self._framed(url):
                    await self._frames_once(url)
                else:
                    await self._stream_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._on_failure(exc, delay)
            if self._halting:
                return
            if self._accepted:
                delay = cfg.backoff_initial
            elif len(self._targets) > 1:
                await self._channel.close(None)
                self._url_index = (self._url_index + 1) % len(self._targets)
                self._channel, self._channel_pin = self._new_channel()
            # jitter keeps members that lost each other at once from retrying in lockstep
            if await self._backoff(delay * (0.5 + 0.5 * self.env.rand.random())):
                delay = cfg.backoff_initial
                if not self._halting:
                    await self._redial()
            else:
                delay = min(delay * 2, cfg.backoff_max)

    def kick(self) -> None:
        """The peer is alive (it just reached us): if the stream to it is down, retry now."""
        if self.active_since is None and not self._closed:
            self._kicked.set()

    async def _backoff(self, seconds: float) -> bool:
        """Sleep ``seconds`` on the clock, or until kicked; True if kicked."""
        if not self._kicked.is_set():
            sleep = asyncio.ensure_future(self.env.clock.sleep(seconds))
            kicked = asyncio.ensure_future(self._kicked.wait())
            try:
                await asyncio.wait((sleep, kicked), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                kicked.cancel()
        was_kicked = self._kicked.is_set()
        self._kicked.clear()
        return was_kicked

    async def _redial(self) -> None:
        """A new channel in place of one that may be waiting out gRPC's reconnect backoff.
        Calls still on the old one (requests forwarded to this peer) get a moment to finish."""
        old = self._channel
        self._channel, self._channel_pin = self._new_channel()
        task = asyncio.get_running_loop().create_task(old.close(1.0))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _framed(self, url: str) -> bool:
        """Whether to try a framed stream (petcd.peer.frames) to ``url``: plain-text TCP only."""
        return url not in self._grpc_only and urlsplit(url).scheme == "http"

    async def _frames_once(self, url: str) -> None:
        cfg = self.env.config
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None  # checked by grpc_target
        try:
            async with asyncio.timeout(cfg.handshake_timeout):
                stream = await open_frame_stream(parts.hostname, parts.port, self._header, self._wake.set)
        except NotFramed as exc:
            # a member that serves its peer URL with gRPC alone: its stream is a gRPC one
            log.info("peer %x does not take framed streams at %s (%s); using gRPC", self.peer_id, url, exc)
            self._grpc_only.add(url)
            await self._stream_once()
            return
        self._accepted = True
        self._set_up("framed")
        pinger = asyncio.get_running_loop().create_task(
            keep_alive(stream, self.env.clock, cfg.keepalive_seconds, cfg.keepalive_timeout_seconds)
        )
        try:
            while True:
                if stream.error is not None:
                    raise stream.error
                if not len(self.queue):
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, count = self.queue.take_encoded(cfg.max_batch_bytes)
                stream.send(batch)
                self.stats.messages_sent += count
                self.stats.batches_sent += 1
                await stream.drain()
        finally:
            pinger.cancel()
            stream.close()

    async def _stream_once(self) -> None:
        cfg = self.env.config
        call: SendCall = self._stub().Send()
        call.add_done_callback(lambda _c: self._wake.set())
        try:
            # bounded as a whole: a peer whose host drops packets stalls the connect, not the write.
            # (asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the handshake fails, and the link would never stop)
            async with asyncio.timeout(cfg.handshake_timeout):
                await self._handshake(call)
            self._accepted = True
            self._set_up("gRPC")
            while True:
                if call.done():
                    await call
                    raise StreamEnded("receiver closed the stream")
                if not len(self.queue):
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                msgs = self.queue.take_batch(cfg.max_batch_bytes)
                batch = peerpb.MessageBatch(
                    cluster_id=self.env.cluster_id,
                    sender_id=self.env.member_id,
                    receiver_id=self.peer_id,
                    messages=msgs,
                )
                try:
                    await call.write(batch)
                except BaseException:
                    self.stats.messages_dropped += len(msgs)
                    raise
                self.stats.messages_sent += len(msgs)
                self.stats.batches_sent += 1
        finally:
            if not call.done():
                call.cancel()

    async def _handshake(self, call: SendCall) -> None:
        await call.write(self._header)
        md = await call.initial_metadata()
        if md is None or md.get(ACCEPTED_KEY) is None:
            await call  # raises the receiver's error
            raise StreamEnded("stream closed before it was accepted")

    def _set_up(self, kind: str) -> None:
        self._kicked.clear()
        self.queue.set_up(True)
        self.active_since = self.env.clock.now()
        self.stats.connected = True
        log.info("peer %x: %s stream established (%s)", self.peer_id, kind, self.urls[self._url_index])

    def _set_down(self) -> None:
        self.stats.messages_dropped += self.queue.set_up(False)
        self.active_since = None
        self.stats.connected = False

    def _on_failure(self, exc: Exception, delay: float) -> float:
        was_up = self.active_since is not None
        self._set_down()
        self.stats.stream_failures += 1
        code: grpc.StatusCode | None = None
        text = repr(exc)
        if isinstance(exc, grpc.aio.AioRpcError):
            code, text = exc.code(), exc.details() or ""
        elif isinstance(exc, FrameRefused):
            code, text = exc.code, exc.details
        if code == grpc.StatusCode.PERMISSION_DENIED:
            log.error("peer %x refused this member: %s", self.peer_id, text)
            if self.env.on_removed is not None:
                self.env.on_removed(self.peer_id)
            delay = self.env.config.backoff_max
        elif code == grpc.StatusCode.FAILED_PRECONDITION:
            hidden = self._logs.allow("rejected")
            if hidden is not None:
                log.error("peer %x rejected the stream: %s", self.peer_id, text)
            delay = self.env.config.backoff_max
        elif was_up:
            log.warning("peer %x: lost stream (%s)", self.peer_id, text)
        else:
            hidden = self._logs.allow("unreachable")
            if hidden is not None:
                log.warning("peer %x unreachable at %s: %s", self.peer_id, self.urls[self._url_index], text)
        self.env.report_unreachable(self.peer_id)
        return delay

    # -- snapshots ----------------------------------------------------------------------

    def send_snapshot(self, msg: raftpb.Message) -> None:
        if self._snapshot_busy:
            # raft waits for the report of the one in flight before it sends another
            log.info(
                "peer %x: snapshot already in flight; dropping MsgSnap at index %d",
                self.peer_id,
                msg.snapshot.metadata.index,
            )
            return
        self._snapshot_busy = True
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._send_snapshot(msg), name=f"peer-{self.peer_id:x}-snapshot"
        )

    @property
    def snapshot_in_flight(self) -> bool:
        return self._snapshot_busy

    async def _send_snapshot(self, msg: raftpb.Message) -> None:
        cfg = self.env.config
        index = msg.snapshot.metadata.index
        failed = True
        path: str | None = None
        try:
            path = await self.env.snapshot_source(msg)
            header = peerpb.SnapshotChunk(
                cluster_id=self.env.cluster_id, sender_id=self.env.member_id, receiver_id=self.peer_id
            )
            size = await send_snapshot(
                lambda: self._stub().SendSnapshot(),
                header,
                msg,
                path,
                cfg.snapshot_chunk_bytes,
                cfg.snapshot_chunk_timeout,
                cfg.snapshot_ack_timeout,
            )
            failed = False
            self.stats.snapshots_sent += 1
            log.info("peer %x: sent snapshot at index %d (%d bytes)", self.peer_id, index, size)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "peer %x: snapshot at index %d failed: %s %s",
                self.peer_id,
                index,
                exc.code().name,
                exc.details(),
            )
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self.env.report_unreachable(self.peer_id)
        except (TimeoutError, SnapshotTransferError, OSError) as exc:
            log.warning("peer %x: snapshot at index %d failed: %s", self.peer_id, index, exc)
        except Exception:
            log.exception("peer %x: snapshot at index %d failed", self.peer_id, index)
        finally:
            if failed:
                self.stats.snapshots_failed += 1
            try:
                if path is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.env.snapshot_sent(path))
            finally:
                # the next MsgSnap may follow the report at once: it must find the link free
                self._snapshot_busy = False
                # reported on cancellation too: raft must not wait forever for this snapshot
                self.env.report_snapshot(self.peer_id, failed)
