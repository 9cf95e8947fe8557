"""TCP proxies between members, to cut them apart (loopback only).

Each member listens for peers on a private port and advertises a proxy port in front of it, so
every peer connection to member X goes through X's proxy. ``isolate(name)`` cuts X off both
ways: its proxy drops every connection (peers cannot reach X), and the other proxies drop the
connections X opened (X cannot reach them). A proxy learns which member opened a connection
from the kernel: the client end's port is looked up in /proc/net/tcp and the socket's inode in
the member processes' open files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.harness import LOOPBACK


def _socket_inode(port: int) -> int | None:
    """The inode of the loopback TCP socket whose local port is ``port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local = parts[1]
                    if int(local.rsplit(":", 1)[1], 16) == port:
                        return int(parts[9])
        except FileNotFoundError:
            continue
    return None


def _owner(inode: int, pids: dict[str, int]) -> str | None:
    want = f"socket:[{inode}]"
    for name, pid in pids.items():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                        return name
        except OSError:
            continue
    return None


@dataclass
class _Conn:
    source: str | None  # the member that opened it, if known
    tasks: list[asyncio.Task[None]]
    writers: list[asyncio.StreamWriter]

    def close(self) -> None:
        for w in self.writers:
            w.close()
        for t in self.tasks:
            t.cancel()


@dataclass
class PeerProxy:
    name: str  # the member behind it
    listen_port: int
    target_port: int
    pids: Callable[[], dict[str, int]]
    blocked: set[str] = field(default_factory=set)  # sources refused ("*": everyone)
    conns: list[_Conn] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, LOOPBACK, self.listen_port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for c in self.conns:
            c.close()
        self.conns.clear()

    def _refused(self, source: str | None) -> bool:
        return "*" in self.blocked or (source is not None and source in self.blocked)

    def enforce(self) -> None:
        for c in list(self.conns):
            if self._refused(c.source):
                c.close()
                self.conns.remove(c)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        inode = _socket_inode(peer[1]) if peer else None
        source = _owner(inode, self.pids()) if inode is not None else None
        if self._refused(source):
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:
            writer.close()
            return
        conn = _Conn(source, [], [writer, up_writer])
        conn.tasks = [asyncio.ensure_future(_pipe(reader, up_writer)), asyncio.ensure_future(_pipe(up_reader, writer))]
        self.conns.append(conn)
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        conn.close()
        if conn in self.conns:
            self.conns.remove(conn)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@dataclass
class PeerProxies:
    proxies: dict[str, PeerProxy]

    async def start(self) -> None:
        for p in self.proxies.values():
            await p.start()

    async def stop(self) -> None:
        for p in self.proxies.values():
            await p.stop()

    def isolate(self, name: str) -> None:
        for p in self.proxies.values():
            if p.name == name:
                p.blocked.add("*")
            else:
                p.blocked.add(name)
            p.enforce()

    def heal(self) -> None:
        for p in self.proxies.values():
            p.blocked.clear()
