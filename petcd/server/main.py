"""The ``petcd`` command: parse etcd's flags, start one member, serve until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import grpc

from petcd.api.auth import AuthServicer
from petcd.api.credentials import Credentials
from petcd.api.election import ElectionServicer
from petcd.api.errors import status_of
from petcd.api.handlers import add_servicer
from petcd.api.kv import KVServicer
from petcd.api.lease import LeaseServicer
from petcd.api.lock import LockServicer
from petcd.api.maintenance import ClusterServicer, MaintenanceServicer
from petcd.api.watch import register as register_watch
from petcd.clock import LoopClock
from petcd.config import (
    ConfigError,
    ServerSettings,
    best_practice_warnings,
    load_config_or_exit,
    settings_from_config,
    startup_notes,
)
from petcd.config.logs import configure_logging
from petcd.frontend.dispatch import Dispatcher, LinkServer
from petcd.frontend.methods import BY_PATH
from petcd.frontend.process import server_options
from petcd.frontend.supervisor import (
    FrontendError,
    FrontendSpec,
    FrontendSupervisor,
    Keepalive,
    bind_error,
    claim_ports,
    make_socket_dir,
)
from petcd.http import GrpcCounters, HttpError, HttpSide
from petcd.http.clientport import ClientPort
from petcd.http.gateway import Gateway
from petcd.http.gateway import Metadata as GatewayMetadata
from petcd.http.grpcstats import interceptor as grpc_interceptor
from petcd.http.metrics import PeerLink
from petcd.peer import PeerTransport, add_forward_service, leader_forwarding
from petcd.peer import add_to_server as add_peer_service
from petcd.peer.hashkv import insecure_channel_for, peer_hashes
from petcd.peer.member import build as build_member
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.v3electionpb import v3election_pb2 as electionpb
from petcd.proto.v3lockpb import v3lock_pb2 as lockpb
from petcd.server import sdnotify
from petcd.server.bootstrap import BootstrapError, Paths
from petcd.server.concurrency import Cleanups, MemberKV
from petcd.server.corruption import CorruptionMonitor, DataInconsistencyError
from petcd.server.election import Elections
from petcd.server.etcdserver import EtcdServer
from petcd.server.lock import Locks
from petcd.wal import WAL, WALError

log = logging.getLogger("petcd")


def grpc_address(url: str) -> str:
    """The address gRPC binds for a listen URL (http://h:p, https://h:p, unix://path)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("unix", "unixs"):
        return f"unix:{rest}"
    return rest.split("/", 1)[0]


def build_grpc_server(srv: EtcdServer, transport: PeerTransport, dispatcher: Dispatcher,
                      counters: GrpcCounters) -> grpc.aio.Server:
    """The member's own gRPC server: the client API (also fed to ``dispatcher`` for calls that
    front-ends forward) and the peer service; ``counters`` count its calls for /metrics."""
    s = srv.settings
    # a second process on the same port must fail, as etcd's does: no SO_REUSEPORT here
    server = grpc.aio.server(interceptors=[grpc_interceptor(counters)],
                             options=server_options(s.max_recv_message_bytes, s.max_concurrent_streams, False,
                                                    keepalive(s)))
    # whose call it is (token; a client certificate's CN plugs in here as common_name=...)
    creds = Credentials(srv)
    register_watch(srv, server, creds)
    services = pb.DESCRIPTOR.services_by_name
    forward = leader_forwarding(srv, transport)  # what a follower hands the leader
    for name, servicer in (
        ("KV", KVServicer(srv, creds)), ("Maintenance", MaintenanceServicer(srv, creds)),
        ("Cluster", ClusterServicer(srv, forward, creds)), ("Lease", LeaseServicer(srv, forward, creds)),
        ("Auth", AuthServicer(srv, creds)),
    ):
        add_servicer(server, services[name], servicer)
        dispatcher.add_servicer(services[name], servicer)
    # Lock and Election are clients of the member's own KV, Watch and Lease APIs, as in etcd
    kv, cleanups = MemberKV(srv), Cleanups()
    concurrency: tuple[tuple[Any, object], ...] = (
        (lockpb.DESCRIPTOR.services_by_name["Lock"], LockServicer(Locks(kv, cleanups), creds)),
        (electionpb.DESCRIPTOR.services_by_name["Election"], ElectionServicer(Elections(kv, cleanups), creds)),
    )
    for service, concurrency_servicer in concurrency:
        add_servicer(server, service, concurrency_servicer)
        dispatcher.add_servicer(service, concurrency_servicer)
    add_peer_service(transport, server)
    add_forward_service(transport, forward, server)
    return server


def build_http_side(srv: EtcdServer, transport: PeerTransport, dispatcher: Dispatcher,
                    counters: GrpcCounters, sockdir: str) -> HttpSide:
    """The member's HTTP listeners (petcd.http), handed what they use of the layers above the
    server: etcd's error texts, the peer links' stats, the dispatcher for the gateway's unary
    calls and a channel to the member's gRPC socket in ``sockdir`` for its streams."""

    def peer_links() -> list[PeerLink]:
        return [PeerLink(p, st.connected, st.messages_dropped, st.snapshots_sent, st.snapshots_failed)
                for p, st in transport.stats().items()]

    gateway: Gateway | None = None
    if srv.settings.enable_grpc_gateway:
        channels: list[grpc.aio.Channel] = []

        def channel() -> grpc.aio.Channel:
            if not channels:  # made on first use, on the running loop
                channels.append(grpc.aio.insecure_channel(f"unix:{sockdir}/member.sock", options=[
                    ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]))
            return channels[0]

        def unary(path: str, md: GatewayMetadata, payload: bytes) -> Awaitable[tuple[int, bytes]]:
            return dispatcher.run(BY_PATH[path].index, md, payload)

        gateway = Gateway(unary, channel)
    async def probe(peer_id: int) -> float:
        return (await transport.probe(peer_id)).rtt

    return HttpSide(srv, srv.clock, lambda err: status_of(err)[1], peer_links, probe, counters, gateway)


def keepalive(s: ServerSettings) -> Keepalive:
    return Keepalive(s.grpc_keepalive_min_time, s.grpc_keepalive_interval, s.grpc_keepalive_timeout)


def frontend_count(requested: int) -> int:
    """--client-frontends: -1 means one per CPU this process may use, at most 4, none on one CPU."""
    if requested >= 0:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cpus < 2 else min(cpus, 4)


def corruption_monitor(srv: EtcdServer, settings: ServerSettings) -> CorruptionMonitor:
    # etcd's request timeout: 5 s plus two election timeouts
    timeout = 5.0 + 2 * settings.election_timeout_ms / 1000.0
    return CorruptionMonitor(srv, peer_hashes(insecure_channel_for, timeout))


async def serve(settings: ServerSettings) -> int:
    # etcd checks a member's data against its peers only when it had data before this start
    initialized = WAL.exists(str(Paths.of(settings.data_dir, settings.wal_dir).wal_dir))
    try:
        member = await build_member(settings, LoopClock())
        srv = member.server
        corruption = corruption_monitor(srv, settings)
        if settings.initial_corrupt_check and initialized:
            await corruption.initial_check()
        await srv.start()
    except (BootstrapError, WALError, DataInconsistencyError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    # what start-up built (modules, the key index restored from the backend) lives as long as
    # the process: keep it out of every later full collection
    gc.freeze()
    peer_addrs = [grpc_address(u) for u in settings.listen_peer_urls]
    client_addrs = [grpc_address(u) for u in settings.listen_client_urls]
    # TCP client addresses go to the front-ends; unix sockets and addresses shared with the peer
    # URL stay with the member's own server
    fronted = [a for a in dict.fromkeys(client_addrs) if not a.startswith("unix:") and a not in peer_addrs]
    count = frontend_count(settings.client_frontends) if fronted else 0
    if count == 0:
        fronted = []
    direct = [a for a in dict.fromkeys([*client_addrs, *peer_addrs]) if a not in fronted]
    grpc_counters = GrpcCounters(extensive=settings.metrics == "extensive")
    dispatcher = Dispatcher(grpc_counters.record_unary)
    server = build_grpc_server(srv, member.transport, dispatcher, grpc_counters)
    # --client-urls-http: HTTP/1 on the client URLs too (etcd's cmux), unless
    # --listen-client-http-urls takes it away from them, as in etcd 3.6. Off by default: the relay
    # costs gRPC 5-12% (docs/benchmarks.md). The member serves the client TCP addresses it keeps
    # itself through the same sniffer as the front-ends do (petcd.http.clientport)
    sniff = settings.client_urls_http and not settings.listen_client_http_urls
    sniffed = [a for a in direct if sniff and a in client_addrs and not a.startswith("unix:") and a not in peer_addrs]
    direct = [a for a in direct if a not in sniffed]
    # the member's private gRPC socket: for the front-ends' streams, the gateway's, the sniffer's
    sockdir = make_socket_dir() if fronted or sniff or settings.enable_grpc_gateway else ""
    http = build_http_side(srv, member.transport, dispatcher, grpc_counters, sockdir)
    client_port = ClientPort(f"{sockdir}/member.sock", f"{sockdir}/http.sock")
    guards: list[socket.socket] = []
    supervisor: FrontendSupervisor | None = None
    links: LinkServer | None = None
    try:
        await http.start(settings.listen_client_http_urls, settings.listen_metrics_urls)
        if fronted:
            guards = claim_ports(fronted)
        if sockdir:
            server.add_insecure_port(f"unix:{sockdir}/member.sock")
        for addr in direct:
            try:
                server.add_insecure_port(addr)
            except RuntimeError:
                raise FrontendError(bind_error(addr)) from None
        await server.start()
        if sniff:
            await http.serve_client_unix(f"{sockdir}/http.sock")
        for addr in sniffed:
            host, _, port = addr.rpartition(":")
            try:
                await client_port.listen(host.strip("[]"), int(port), reuse_port=False)
            except OSError as exc:
                raise FrontendError(bind_error(addr, exc.strerror or str(exc))) from None
        if fronted:
            supervisor = FrontendSupervisor(FrontendSpec(
                count=count, listen=tuple(fronted), link_path=f"{sockdir}/link.sock",
                member_grpc_path=f"{sockdir}/member.sock", max_recv_bytes=settings.max_recv_message_bytes,
                max_concurrent_streams=settings.max_concurrent_streams, log_level=settings.log_level,
                log_outputs=settings.log_outputs, keepalive=keepalive(settings),
                http_socket=f"{sockdir}/http.sock" if sniff else "",
            ))
            links = LinkServer(dispatcher, supervisor.on_ready)
            await links.start(f"{sockdir}/link.sock")
            await supervisor.start()
    except (FrontendError, HttpError) as exc:
        log.error("%s", exc)
        await client_port.stop()
        await _shutdown(server, srv, supervisor, links, guards, sockdir, http)
        return 1
    log.info("serving client requests on %s (%s)", ", ".join(settings.listen_client_urls),
             f"{count} front-end processes" if fronted else "in the member process")
    log.info("member %x of cluster %x is ready (data dir %s)", srv.member_id, srv.cluster_id, settings.data_dir)
    checks = (asyncio.create_task(corruption.run(settings.corrupt_check_interval))
              if settings.corrupt_check_interval > 0 else None)
    sd_ready = sdnotify.notify_ready(srv, f"serving clients on {', '.join(settings.listen_client_urls)}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(srv.stopped.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    log.info("shutting down")
    if checks is not None:
        checks.cancel()
    sdnotify.notify_stopping(sd_ready)
    await client_port.stop()
    await _shutdown(server, srv, supervisor, links, guards, sockdir, http)
    failed = srv.fatal is not None
    return 1 if failed else 0


async def _shutdown(
    server: grpc.aio.Server, srv: EtcdServer, supervisor: FrontendSupervisor | None,
    links: LinkServer | None, guards: list[socket.socket], sockdir: str, http: HttpSide,
) -> None:
    await http.stop()
    # front-ends first: they finish the calls in flight, which the member still answers
    if supervisor is not None:
        await supervisor.stop()
    if links is not None:
        await links.stop()
    await server.stop(grace=1.0)
    await srv.stop()
    for g in guards:
        g.close()
    if sockdir:
        shutil.rmtree(sockdir, ignore_errors=True)


def tune_gc() -> None:
    """Collect young objects every 50,000 allocations instead of 700. A write allocates dozens of
    objects and the key index holds several per key, so with the default thresholds collections
    ran every few requests and full ones kept rescanning the whole index: 15% of a put's CPU at
    200,000 keys (bench/server_path.py), under 1% with these. Reference counting still frees
    nearly everything at once; only cyclic garbage waits a little longer."""
    gc.set_threshold(50_000, 20, 10)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = load_config_or_exit(args, os.environ)
    has_data = WAL.exists(cfg.wal_path)
    if not has_data:
        # etcd checks --initial-cluster against this member only when it has no data yet
        try:
            cfg.check_bootstrap()
        except ConfigError as exc:
            print(exc.message, file=sys.stderr)
            sys.exit(exc.exit_code)
    settings = settings_from_config(cfg)
    configure_logging(settings.log_level, settings.log_outputs)
    if cfg.force_new_cluster and not has_data:
        log.warning("--force-new-cluster has no effect: this member has no data yet, so it bootstraps "
                    "from --initial-cluster as usual")
    for warning in cfg.warnings:
        log.warning("%s", warning)
    for warning in best_practice_warnings(cfg):
        log.warning("%s", warning)
    for note in startup_notes(cfg):
        log.info("%s", note)
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without it
        runner = asyncio.run
    tune_gc()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(runner(serve(settings)))
