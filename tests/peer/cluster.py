"""Members for transport tests: a PeerTransport served on a loopback port as a member serves its
peer URL (framed raft streams, gRPC relayed to a real grpc.aio server), recording what its
callbacks receive."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc

from petcd.http.clientport import ClientPort
from petcd.http.peerhttp import classify_peer
from petcd.peer import MAX_MESSAGE_BYTES, PeerConfig, PeerTransport, add_to_server, server_options
from petcd.peer.frames import PREFACE as FRAMES_PREFACE
from petcd.peer.frames import FrameReceiver
from petcd.proto.raftpb import raft_pb2 as raftpb
from tests.harness import free_ports
from tests.harness.waiting import until

CLUSTER = 0xC1A5
FAST = PeerConfig(backoff_initial=0.02, backoff_max=0.2, log_interval=0.0)


def msg(
    to: int, frm: int, index: int, typ: raftpb.MessageType = raftpb.MsgApp, payload: bytes = b""
) -> raftpb.Message:
    m = raftpb.Message(type=typ, to=to, term=1, index=index)
    setattr(m, "from", frm)
    if payload:
        m.entries.add(term=1, index=index, data=payload)
    return m


def sender(m: raftpb.Message) -> int:
    return int(getattr(m, "from"))


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Member:
    def __init__(
        self,
        member_id: int,
        port: int,
        root: Path,
        cluster_id: int = CLUSTER,
        config: PeerConfig = FAST,
        server_max_receive: int = MAX_MESSAGE_BYTES,
        grpc_only: bool = False,
    ) -> None:
        self.id = member_id
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.root = root / f"m{member_id:x}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.batches: list[list[raftpb.Message]] = []
        self.unreachable: list[int] = []
        self.snapshot_reports: list[tuple[int, bool]] = []
        self.installed: list[tuple[raftpb.Message, str, str]] = []
        self.removed_by: list[int] = []
        self.sources: list[str] = []
        self.install_error: Exception | None = None
        self.install_gate: asyncio.Event | None = None
        self.snapshot_payload = b""
        self.server: grpc.aio.Server | None = None
        self.server_max_receive = server_max_receive
        self.grpc_only = grpc_only
        self.port_listener: ClientPort | None = None
        self.frame_receivers: list[FrameReceiver] = []
        self.transport = PeerTransport(
            member_id,
            cluster_id,
            self.batches.append,
            self._on_snapshot,
            self.unreachable.append,
            lambda peer, failed: self.snapshot_reports.append((peer, failed)),
            self._snapshot_source,
            self.root / "snap-in",
            config=config,
            on_removed=self.removed_by.append,
            cluster_version=lambda: "3.5.0",
            rand=random.Random(member_id),
        )

    @property
    def received(self) -> list[raftpb.Message]:
        return [m for b in self.batches for m in b]

    def received_from(self, peer: int) -> list[int]:
        return [m.index for m in self.received if sender(m) == peer]

    async def _on_snapshot(self, m: raftpb.Message, path: str) -> None:
        if self.install_gate is not None:
            await self.install_gate.wait()
        if self.install_error is not None:
            raise self.install_error
        self.installed.append((m, path, sha256_file(path)))

    async def _snapshot_source(self, m: raftpb.Message) -> str:
        path = self.root / f"out-{len(self.sources)}.db"
        path.write_bytes(self.snapshot_payload)
        self.sources.append(str(path))
        return str(path)

    async def serve(self) -> None:
        """Serve the peer URL as a member does: TCP taken by a peer port (petcd.http.clientport)
        that keeps framed raft streams and relays gRPC to a server on a Unix socket; with
        ``grpc_only`` a bare gRPC server on the TCP port (senders fall back to gRPC streams)."""
        server = grpc.aio.server(options=server_options(self.server_max_receive))
        add_to_server(self.transport, server)
        if self.grpc_only:
            server.add_insecure_port(f"127.0.0.1:{self.port}")
        else:
            sock = self.root / "peer.sock"
            sock.unlink(missing_ok=True)
            server.add_insecure_port(f"unix:{sock}")
        await server.start()
        self.server = server
        if not self.grpc_only:
            port = ClientPort(str(self.root / "peer.sock"), str(self.root / "no-http.sock"), classify_peer,
                              takeover=(FRAMES_PREFACE, self._frame_receiver))
            await port.listen("127.0.0.1", self.port, reuse_port=False)
            self.port_listener = port

    def _frame_receiver(self) -> asyncio.Protocol:
        r = self.transport.frame_receiver(self.server_max_receive)
        self.frame_receivers.append(r)
        return r

    async def halt_server(self) -> None:
        """As if the member's process died: listeners and inbound streams closed."""
        if self.port_listener is not None:
            await self.port_listener.stop()
            self.port_listener = None
        for r in self.frame_receivers:
            r.close()
        self.frame_receivers.clear()
        if self.server is not None:
            await self.server.stop(None)
            self.server = None

    async def close(self) -> None:
        await self.transport.stop()
        await self.halt_server()


async def start_members(root: Path, n: int, **kw: Any) -> list[Member]:
    ports = free_ports(n)
    return await start_all([Member(i + 1, ports[i], root, **kw) for i in range(n)])


async def start_all(members: list[Member]) -> list[Member]:
    """Each member a peer of every other, serving, and its transport started."""
    for m in members:
        for other in members:
            if other is not m:
                m.transport.add_peer(other.id, [other.url])
        await m.serve()
    for m in members:
        await m.transport.start()
    return members


@contextlib.asynccontextmanager
async def closing(*members: Member) -> AsyncIterator[None]:
    """Close every member on the way out, whatever the body did."""
    try:
        yield
    finally:
        for m in members:
            await m.close()


async def connected(a: Member, b: Member) -> None:
    await until(lambda: a.transport.active_since(b.id) is not None, what=f"stream {a.id}->{b.id}")


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]], timeout: float = 20.0) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(coro_fn())
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            # name what is stuck before giving up on it
            stacks = io.StringIO()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    print(f"task {t.get_name()}:", file=stacks)
                    for f in t.get_stack():
                        print(f"  {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}", file=stacks)
            task.cancel()
            raise AssertionError(f"test body hung for {timeout} s; tasks:\n{stacks.getvalue()}")
        task.result()

    asyncio.run(main())
