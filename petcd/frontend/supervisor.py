"""The member's side of its front-end processes: claim the client ports, start, restart, stop.

Ports: before any front-end starts, each client address is bound once *without* SO_REUSEPORT
(with SO_REUSEADDR, so connections left in TIME_WAIT do not count), so a port some other process
listens on fails startup with etcd's "address already in use", then
bound again *with* SO_REUSEPORT and kept (never listening) for the member's lifetime. That guard
takes no connections, and it keeps any process that does not share the port group out of the
port even while a crashed front-end is being restarted.

A member started at once on the ports of one that was just killed may find them still held by
the dead member's front-ends for a moment (the kernel kills them with the member, but a
multi-threaded process takes a while to go): ``claim_ports_when_free`` probes and retries for a
bounded time before it gives up with the address that stayed taken.

Lifecycle: ``launch`` spawns the processes (the member starts them before it bootstraps, so
their start-up overlaps its own), ``wait_started`` returns once all of them report READY over
their links (they listen on the client ports but accept nothing yet), ``serve`` tells them on
their stdin to accept: the member calls it once it is ready, as etcd serves no client before
then. A front-end that exits later is restarted after a pause that grows while it keeps failing
(and told to serve at once if the member already does); ``stop`` sends SIGTERM (they drain
calls in flight) and SIGKILL to any left after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from petcd.clock import Clock
from petcd.config.govalues import split_host_port

log = logging.getLogger("petcd.frontend")

RESTART_PAUSE_MIN = 0.5
# the line a front-end waits for on its stdin before it accepts client connections
SERVE = b"serve\n"
RESTART_PAUSE_MAX = 10.0


class FrontendError(Exception):
    pass


class PortInUse(FrontendError):
    """A listen address some other process still listens on."""

    def __init__(self, addr: str, message: str) -> None:
        super().__init__(message)
        self.addr = addr


# how long a start waits for ports a previous process is still letting go of, probing this often
PORT_WAIT = 5.0
PORT_PROBE_EVERY = 0.05


SOCKET_DIR_PREFIX = "petcd-sock-"
_SOCKET_DIR = re.compile(re.escape(SOCKET_DIR_PREFIX) + r"(\d+)-")


def make_socket_dir() -> str:
    """A private (0700) directory for the link and member sockets, named after this process.

    Unix socket paths are limited to ~107 bytes, so they live in the temp dir rather than the
    data dir. Directories left by members that were killed (their pid is gone) are removed.
    """
    tmp = Path(tempfile.gettempdir())
    for entry in tmp.glob(SOCKET_DIR_PREFIX + "*"):
        m = _SOCKET_DIR.match(entry.name)
        if m is None or not entry.is_dir() or entry.stat().st_uid != os.getuid():
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(entry, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{SOCKET_DIR_PREFIX}{os.getpid()}-")


def bind_error(addr: str, reason: str = "address already in use") -> str:
    """etcd's message for a listen address it cannot bind."""
    return f"listen tcp {addr}: bind: {reason}"


def claim_ports(addrs: list[str]) -> list[socket.socket]:
    """Guard sockets for ``addrs`` (host:port); FrontendError if one is taken."""
    guards: list[socket.socket] = []
    try:
        for addr in addrs:
            host, port = split_host_port(addr)
            infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, socktype, proto, _, sockaddr in dict.fromkeys(
                (i[0], i[1], i[2], "", i[4]) for i in infos
            ):
                for reuse in (False, True):
                    s = socket.socket(family, socktype, proto)
                    try:
                        if family == socket.AF_INET6:
                            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        # as gRPC and Go do: connections of a previous run in TIME_WAIT must not
                        # block a restart; a socket still listening on the port does
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        if reuse:
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                        s.bind(sockaddr)
                    except OSError as exc:
                        s.close()
                        if exc.errno == errno.EADDRINUSE:
                            raise PortInUse(addr, bind_error(addr)) from None
                        if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                            break  # no IPv6 here; gRPC skips it too
                        raise FrontendError(bind_error(addr, exc.strerror or str(exc))) from None
                    if reuse:
                        guards.append(s)
                    else:
                        s.close()
    except BaseException:
        for g in guards:
            g.close()
        raise
    return guards


async def claim_ports_when_free(addrs: list[str], clock: Clock, wait: float = PORT_WAIT,
                                every: float = PORT_PROBE_EVERY) -> list[socket.socket]:
    """``claim_ports``, retried while a port is in use, for up to ``wait`` seconds; then
    PortInUse naming the address that stayed taken."""
    deadline = clock.now() + wait
    logged = False
    while True:
        try:
            return claim_ports(addrs)
        except PortInUse as exc:
            if clock.now() >= deadline:
                raise PortInUse(exc.addr, f"{exc} (still in use after {wait:g}s of retries)") from None
            if not logged:
                logged = True
                log.warning("%s; retrying for up to %gs (the processes of a member that just died may "
                            "still hold it)", exc, wait)
        await clock.sleep(every)


async def wait_for_free_ports(addrs: list[str], clock: Clock, wait: float = PORT_WAIT) -> None:
    """Return once every TCP address in ``addrs`` can be bound (the probe sockets are closed
    again), or raise PortInUse after ``wait`` seconds. Unix socket addresses are skipped."""
    tcp = [a for a in addrs if not a.startswith("unix:")]
    for g in await claim_ports_when_free(tcp, clock, wait):
        g.close()


@dataclass(frozen=True, slots=True)
class Keepalive:
    """etcd's --grpc-keepalive-min-time, -interval and -timeout, in seconds."""

    min_time: float
    interval: float
    timeout: float


@dataclass(frozen=True, slots=True)
class FrontendTLS:
    """The client URLs' certificate, which the front-ends load themselves (paths, not bytes, so
    no key travels on a command line)."""

    cert_file: str
    key_file: str
    ca_file: str  # "" for none
    require_client_cert: bool
    allowed_hostname: str = ""  # --client-cert-allowed-hostname


@dataclass(frozen=True, slots=True)
class FrontendSpec:
    count: int
    listen: tuple[str, ...]  # gRPC addresses (host:port)
    link_path: str
    member_grpc_path: str
    max_recv_bytes: int
    max_concurrent_streams: int
    log_level: str
    log_outputs: tuple[str, ...]
    keepalive: Keepalive
    # the member's HTTP socket: when set, front-ends serve HTTP/1 on the client ports too
    # (petcd.http.clientport sorts connections out by their first bytes)
    http_socket: str = ""
    tls_listen: tuple[str, ...] = ()  # gRPC addresses served with ``tls``
    tls: FrontendTLS | None = None


def _tell_serve(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None and proc.returncode is None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # it exited meanwhile: _watch restarts it
            proc.stdin.write(SERVE)


class FrontendSupervisor:
    def __init__(self, spec: FrontendSpec) -> None:
        self.spec = spec
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._ready: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(spec.count)}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._serving = False

    def on_ready(self, index: int) -> None:
        """Called by the link server when front-end ``index`` is listening."""
        if index in self._ready:
            self._ready[index].set()

    def _argv(self, index: int) -> list[str]:
        s = self.spec
        argv = [
            sys.executable, "-m", "petcd.frontend",
            f"--link={s.link_path}", f"--member-grpc={s.member_grpc_path}", f"--index={index}",
            f"--parent={os.getpid()}", f"--max-recv-bytes={s.max_recv_bytes}",
            f"--max-concurrent-streams={s.max_concurrent_streams}", f"--log-level={s.log_level}",
            f"--keepalive-min-time={s.keepalive.min_time}", f"--keepalive-interval={s.keepalive.interval}",
            f"--keepalive-timeout={s.keepalive.timeout}",
        ]
        argv += [f"--log-output={o}" for o in s.log_outputs]
        argv += [f"--listen={a}" for a in s.listen]
        if s.http_socket:
            argv.append(f"--http-socket={s.http_socket}")
        if s.tls is not None and s.tls_listen:
            argv += [f"--tls-listen={a}" for a in s.tls_listen]
            argv += [f"--cert-file={s.tls.cert_file}", f"--key-file={s.tls.key_file}"]
            if s.tls.ca_file:
                argv.append(f"--trusted-ca-file={s.tls.ca_file}")
            if s.tls.require_client_cert:
                argv.append("--client-cert-auth")
            if s.tls.allowed_hostname:
                argv.append(f"--cert-allowed-hostname={s.tls.allowed_hostname}")
        return argv

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        self._ready[index].clear()
        # stdin carries the go-ahead to serve (SERVE)
        proc = await asyncio.create_subprocess_exec(*self._argv(index), stdin=asyncio.subprocess.PIPE)
        self._procs[index] = proc
        if self._serving:
            _tell_serve(proc)
        return proc

    def serve(self) -> None:
        """Let every front-end accept client connections (the member is ready), and any
        restarted later at once."""
        self._serving = True
        for proc in self._procs.values():
            _tell_serve(proc)

    async def start(self, timeout: float = 60.0) -> None:
        await self.launch()
        await self.wait_started(timeout)

    async def launch(self) -> None:
        for i in range(self.spec.count):
            await self._spawn(i)

    async def wait_started(self, timeout: float = 60.0) -> None:
        """Return once every front-end listens; FrontendError (all stopped) if one exits first
        or they take longer than ``timeout``."""

        async def all_ready() -> None:
            await asyncio.gather(*(e.wait() for e in self._ready.values()))

        async def first_exit() -> int:
            done, _ = await asyncio.wait(
                [asyncio.create_task(p.wait()) for p in self._procs.values()],
                return_when=asyncio.FIRST_COMPLETED,
            )
            return next(iter(done)).result()

        ready = asyncio.create_task(all_ready())
        exited = asyncio.create_task(first_exit())
        done, _ = await asyncio.wait([ready, exited], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        exited.cancel()
        if ready not in done:
            await self.stop()
            if exited in done:
                raise FrontendError(f"a client front-end exited during startup (status {exited.result()})")
            raise FrontendError(f"client front-ends not ready after {timeout:.0f}s")
        self._watchers = [asyncio.create_task(self._watch(i)) for i in range(self.spec.count)]

    async def _watch(self, index: int) -> None:
        pause = RESTART_PAUSE_MIN
        while not self._stopping:
            rc = await self._procs[index].wait()
            if self._stopping:
                return
            log.warning("client front-end %d exited with status %s; restarting in %.1fs", index, rc, pause)
            await asyncio.sleep(pause)
            if self._stopping:
                return
            proc = await self._spawn(index)
            ready = asyncio.create_task(self._ready[index].wait())
            exited = asyncio.create_task(proc.wait())
            done, _ = await asyncio.wait([ready, exited], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            exited.cancel()
            pause = RESTART_PAUSE_MIN if ready in done else min(pause * 2, RESTART_PAUSE_MAX)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def stop(self, grace: float = 3.0) -> None:
        self._stopping = True
        for w in self._watchers:
            w.cancel()
        live = [p for p in self._procs.values() if p.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        if live:
            _, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in live], timeout=grace)
            for p in live:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            if pending:
                await asyncio.wait(pending, timeout=grace)
