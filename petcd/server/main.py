"""The ``petcd`` command: parse etcd's flags, start one member, serve until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc

from petcd.api.auth import AuthServicer
from petcd.api.client_cert import client_common_name, strip_reserved
from petcd.api.credentials import Credentials, no_common_name
from petcd.api.election import ElectionServicer
from petcd.api.errors import status_of
from petcd.api.handlers import add_servicer
from petcd.api.kv import KVServicer
from petcd.api.lease import LeaseServicer
from petcd.api.lock import LockServicer
from petcd.api.maintenance import ClusterServicer, MaintenanceServicer
from petcd.api.watch import register as register_watch
from petcd.cert_guard import CertificateGuard
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
    FrontendTLS,
    Keepalive,
    bind_error,
    claim_ports,
    make_socket_dir,
    wait_for_free_ports,
)
from petcd.http.clientport import ClientPort
from petcd.http.gateway import Gateway
from petcd.http.gateway import Metadata as GatewayMetadata
from petcd.http.grpcstats import interceptor as grpc_interceptor
from petcd.http.metrics import PeerLink
from petcd.http.peerhttp import PeerPort, peer_handler
from petcd.http.side import GrpcCounters, HttpError, HttpSide
from petcd.peer import PeerDialer, PeerTLS, PeerTransport, add_forward_service, leader_forwarding
from petcd.peer import add_to_server as add_peer_service
from petcd.peer.frames import PREFACE as FRAMES_PREFACE
from petcd.peer.hashkv import peer_hashes
from petcd.peer.member import build as build_member
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.v3electionpb import v3election_pb2 as electionpb
from petcd.proto.v3lockpb import v3lock_pb2 as lockpb
from petcd.server import leader_transfer, sdnotify
from petcd.server.bootstrap import BootstrapError, Paths
from petcd.server.concurrency import Cleanups, MemberKV
from petcd.server.corruption import CorruptionMonitor, DataInconsistencyError
from petcd.server.election import Elections
from petcd.server.etcdserver import EtcdServer
from petcd.server.lock import Locks
from petcd.server.tls_setup import ensure_cipher_env, is_tls_url, load_member_tls
from petcd.tls import TLSFileError
from petcd.wal import WAL, WALError

log = logging.getLogger("petcd")


def grpc_address(url: str) -> str:
    """The address gRPC binds for a listen URL (http://h:p, https://h:p, unix://path)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("unix", "unixs"):
        return f"unix:{rest}"
    return rest.split("/", 1)[0]


def _client_services(srv: EtcdServer, transport: PeerTransport,
                     creds: Credentials) -> tuple[list[tuple[Any, object]], Any]:
    """The client API's servicers (and the leader forwarder, for the peer service)."""
    services = pb.DESCRIPTOR.services_by_name
    forward = leader_forwarding(srv, transport)  # what a follower hands the leader
    out: list[tuple[Any, object]] = [
        (services["KV"], KVServicer(srv, creds)), (services["Maintenance"], MaintenanceServicer(srv, creds)),
        (services["Cluster"], ClusterServicer(srv, forward, creds)),
        (services["Lease"], LeaseServicer(srv, forward, creds)),
        (services["Auth"], AuthServicer(srv, creds)),
    ]
    # Lock and Election are clients of the member's own KV, Watch and Lease APIs, as in etcd
    kv, cleanups = MemberKV(srv), Cleanups()
    out.append((lockpb.DESCRIPTOR.services_by_name["Lock"], LockServicer(Locks(kv, cleanups), creds)))
    out.append((electionpb.DESCRIPTOR.services_by_name["Election"],
                ElectionServicer(Elections(kv, cleanups), creds)))
    return out, forward


def build_grpc_servers(srv: EtcdServer, transport: PeerTransport, dispatcher: Dispatcher, counters: GrpcCounters,
                       peer_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),  # type: ignore[type-arg]
                       client_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),  # type: ignore[type-arg]
                       ) -> tuple[grpc.aio.Server, grpc.aio.Server]:
    """The member's own gRPC servers, both with the client API (also fed to ``dispatcher`` for
    the calls front-ends forward): one for the client URLs it serves itself and the front-ends'
    private socket, one for the peer URLs, which carries the peer services too. Two, because the
    peer URL's certificate checks (``peer_interceptors``) must not apply to client URLs, nor
    the client URLs' ones (``client_interceptors``) to peers. ``counters`` count calls for /metrics."""
    s = srv.settings
    # a second process on the same port must fail, as etcd's does: no SO_REUSEPORT here
    options = server_options(s.max_recv_message_bytes, s.max_concurrent_streams, False, keepalive(s))
    counting = grpc_interceptor(counters)
    member_server = grpc.aio.server(options=options, interceptors=[counting, *client_interceptors])
    peer_server = grpc.aio.server(options=options, interceptors=[counting, *peer_interceptors])
    # whose call it is: the token, or with --client-cert-auth the verified certificate's CN
    cn = client_common_name if s.client_tls.client_cert_auth else no_common_name
    creds = Credentials(srv, common_name=cn)
    services, forward = _client_services(srv, transport, creds)
    for server in (member_server, peer_server):
        register_watch(srv, server, creds)
        for service, servicer in services:
            add_servicer(server, service, servicer)
    for service, servicer in services:
        dispatcher.add_servicer(service, servicer)
    add_peer_service(transport, peer_server)
    add_forward_service(transport, forward, peer_server)
    return member_server, peer_server


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
                channels.append(grpc.aio.insecure_channel(f"unix:{sockdir}/client.sock", options=[
                    ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]))
            return channels[0]

        def unary(path: str, md: GatewayMetadata, payload: bytes) -> Awaitable[tuple[int, bytes]]:
            # the dispatcher believes the reserved certificate-name key: never take it from a header
            return dispatcher.run(BY_PATH[path].index, strip_reserved(md), payload)

        gateway = Gateway(unary, channel)
    async def probe(peer_id: int) -> float:
        return (await transport.probe(peer_id)).rtt

    return HttpSide(srv, srv.clock, lambda err: status_of(err)[1], peer_links, probe, counters, gateway)


def keepalive(s: ServerSettings) -> Keepalive:
    return Keepalive(s.grpc_keepalive_min_time, s.grpc_keepalive_interval, s.grpc_keepalive_timeout)


def colocated_members(settings: ServerSettings) -> list[str]:
    """The members of --initial-cluster whose peer URLs are on this machine: a loopback host, or
    a host this member advertises for itself (its own entry included)."""
    own = {urlsplit(u).hostname for u in settings.initial_advertise_peer_urls}

    def here(url: str) -> bool:
        host = urlsplit(url).hostname or ""
        if host in own or host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    return [m.name for m in settings.initial_members if any(here(u) for u in m.peer_urls)]


def frontend_count(requested: int, colocated: int) -> int:
    """--client-frontends: -1 means one per CPU of this member's share of the machine (the CPUs
    this process may use over the ``colocated`` members of its cluster that run here), at least
    one and at most 4; none on a one-CPU machine. Front-ends exist to spread one member's gRPC
    work over cores: members that share the machine already do, and every extra process only
    adds its hop (3 members on 2 CPUs: 1.64 ms of CPU per replicated write with one front-end
    each, 1.76 with two; docs/benchmarks.md)."""
    if requested >= 0:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus < 2:
        return 0
    return max(1, min(cpus // max(1, colocated), 4))


def _add_port(server: grpc.aio.Server, addr: str, creds: grpc.ServerCredentials | None) -> None:
    try:
        if creds is None:
            server.add_insecure_port(addr)
        else:
            server.add_secure_port(addr, creds)
    except RuntimeError:
        raise FrontendError(bind_error(addr)) from None


def corruption_monitor(srv: EtcdServer, settings: ServerSettings, dialer: PeerDialer) -> CorruptionMonitor:
    # etcd's request timeout: 5 s plus two election timeouts
    timeout = 5.0 + 2 * settings.election_timeout_ms / 1000.0
    # the peers' hashes are asked over their peer URLs, with the peer certificates for https
    return CorruptionMonitor(srv, peer_hashes(dialer.channel, timeout))


async def serve(settings: ServerSettings) -> int:
    # etcd checks a member's data against its peers only when it had data before this start
    initialized = WAL.exists(str(Paths.of(settings.data_dir, settings.wal_dir).wal_dir))
    try:
        tls = load_member_tls(settings, datetime.datetime.now(datetime.UTC))
    except TLSFileError as exc:
        log.error("cannot start: %s", exc)
        return 1
    # a member restarted at once on the ports of one just killed waits (bounded) for the old
    # processes to let go of them, before it builds anything
    listen = dict.fromkeys(grpc_address(u) for u in (*settings.listen_peer_urls, *settings.listen_client_urls))
    try:
        await wait_for_free_ports(list(listen), LoopClock())
    except FrontendError as exc:
        log.error("%s", exc)
        return 1
    dialer = PeerDialer(PeerTLS(tls.peer_ca_pem, tls.peer_client_pair, tls.peer_auto))
    peer_addrs = {grpc_address(u): is_tls_url(u) for u in settings.listen_peer_urls}
    client_addrs = {grpc_address(u): is_tls_url(u) for u in settings.listen_client_urls}
    # TCP client addresses go to the front-ends; unix sockets stay with the member's own
    # server, and addresses shared with the peer URL with its peer server
    fronted = [a for a in client_addrs if not a.startswith("unix:") and a not in peer_addrs]
    here = colocated_members(settings)
    count = frontend_count(settings.client_frontends, len(here)) if fronted else 0
    if fronted and settings.client_frontends < 0 and len(here) > 1:
        log.info("%d members of --initial-cluster have peer URLs on this machine (%s): %d client front-end(s) "
                 "for this one, its share of the CPUs (--client-frontends=N sets the number)",
                 len(here), ", ".join(here), count)
    if count == 0:
        fronted = []
    direct = [a for a in client_addrs if a not in fronted and a not in peer_addrs]
    # --client-urls-http: HTTP/1 on the plain-text client URLs too (etcd's cmux), unless
    # --listen-client-http-urls takes it away from them, as in etcd 3.6. On by default: the relay
    # costs under 5% of check perf throughput, 2-15% more CPU per write (docs/benchmarks.md). The
    # member serves the client TCP addresses it keeps
    # itself through the same sniffer as the front-ends do (petcd.http.clientport)
    sniff = settings.client_urls_http and not settings.listen_client_http_urls
    sniffed = [a for a in direct if sniff and not a.startswith("unix:") and not client_addrs[a]]
    direct = [a for a in direct if a not in sniffed]
    # private sockets: member.sock for the front-ends (trusted: it carries the certificate names
    # they verified), client.sock for what the member relays itself (the sniffer, the gateway's
    # streams), which is an ordinary client connection
    # plain-text peer URLs carry HTTP/1 too, as etcd's: the member relays them (petcd.http.peerhttp)
    # to peer.sock; TLS ones stay the peer gRPC server's
    relayed = [a for a, secure in peer_addrs.items() if not secure and not a.startswith("unix:")]
    sockdir = make_socket_dir() if fronted or sniff or settings.enable_grpc_gateway or relayed else ""
    grpc_counters = GrpcCounters(extensive=settings.metrics == "extensive")
    dispatcher = Dispatcher(grpc_counters.record_unary)
    allowed_host = tls.client_allowed_hostname
    guards: list[socket.socket] = []
    supervisor: FrontendSupervisor | None = None
    links: LinkServer | None = None
    # from here on a SIGTERM is a clean shutdown, also while the front-ends are still starting
    # (a client may already be served by the first one): it is acted on once startup is done
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if fronted:
        # the front-ends start now, while the member bootstraps (their start-up costs as much
        # as the member's); they listen, and accept nothing until the member is ready
        client = tls.client
        supervisor = FrontendSupervisor(FrontendSpec(
            count=count, listen=tuple(a for a in fronted if not client_addrs[a]),
            link_path=f"{sockdir}/link.sock",
            member_grpc_path=f"{sockdir}/member.sock", max_recv_bytes=settings.max_recv_message_bytes,
            max_concurrent_streams=settings.max_concurrent_streams, log_level=settings.log_level,
            log_outputs=settings.log_outputs, keepalive=keepalive(settings),
            http_socket=f"{sockdir}/http.sock" if sniff else "",
            tls_listen=tuple(a for a in fronted if client_addrs[a]),
            tls=None if client is None else FrontendTLS(
                client.pair.cert_file, client.pair.key_file, client.ca_file, client.require_client_cert,
                allowed_host),
        ))
        links = LinkServer(dispatcher, supervisor.on_ready)
        try:
            guards = claim_ports(fronted)
            await links.start(f"{sockdir}/link.sock")
            await supervisor.launch()
        except FrontendError as exc:
            log.error("%s", exc)
            await _abandon_frontends(supervisor, links, guards, sockdir)
            return 1
    try:
        member = await build_member(settings, LoopClock(), dialer=dialer)
        srv = member.server
        corruption = corruption_monitor(srv, settings, dialer)
        if settings.initial_corrupt_check and initialized:
            await corruption.initial_check()
        await srv.start()
    except (BootstrapError, WALError, DataInconsistencyError) as exc:
        log.error("cannot start: %s", exc)
        await _abandon_frontends(supervisor, links, guards, sockdir)
        return 1
    # what start-up built (modules, the key index restored from the backend) lives as long as
    # the process: keep it out of every later full collection
    gc.freeze()
    guard = [CertificateGuard(tls.allowed_cn, tls.allowed_hostname, tls.check_peer_san)] if tls.guards_peers else []
    client_guard = [CertificateGuard("", allowed_host, False, "--client-cert-allowed-hostname")] if allowed_host else []
    server, peer_server = build_grpc_servers(srv, member.transport, dispatcher, grpc_counters, guard, client_guard)
    client_creds = tls.client.credentials() if tls.client is not None else None
    peer_creds = tls.peer.credentials() if tls.peer is not None else None
    http = build_http_side(srv, member.transport, dispatcher, grpc_counters, sockdir)
    client_port = ClientPort(f"{sockdir}/client.sock", f"{sockdir}/http.sock")
    forward = leader_forwarding(srv, member.transport)

    async def promote(learner: int) -> list[pb.Member]:
        return list((await forward.member_promote(pb.MemberPromoteRequest(ID=learner))).members)

    peer_port = PeerPort(peer_handler(srv, srv.clock, lambda err: status_of(err)[1], promote), srv.clock,
                         f"{sockdir}/peer.sock", f"{sockdir}/peerhttp.sock",
                         (FRAMES_PREFACE, lambda: member.transport.frame_receiver(settings.max_recv_message_bytes)))
    try:
        await http.start(settings.listen_client_http_urls, settings.listen_metrics_urls)
        if fronted:
            # local credentials mark calls on this socket as relayed by a front-end, so the
            # client certificate name the front-end forwards is believed (petcd.api.client_cert)
            server.add_secure_port(f"unix:{sockdir}/member.sock",
                                   grpc.local_server_credentials(grpc.LocalConnectionType.UDS))
        if sockdir:
            server.add_insecure_port(f"unix:{sockdir}/client.sock")
        # adding a port listens on it; ``server`` accepts only once started, when ready
        for addr in direct:
            _add_port(server, addr, client_creds if client_addrs[addr] else None)
        for addr, secure in peer_addrs.items():
            if addr not in relayed:
                _add_port(peer_server, addr, peer_creds if secure else None)
        if relayed:
            peer_server.add_insecure_port(f"unix:{sockdir}/peer.sock")
        # etcd serves its peer URL (the client API included) at once
        await peer_server.start()
        if relayed:
            await peer_port.listen(relayed)
        if sniff:
            await http.serve_client_unix(f"{sockdir}/http.sock")
        for addr in sniffed:
            host, _, port = addr.rpartition(":")
            try:
                await client_port.listen(host.strip("[]"), int(port), reuse_port=False, serve=False)
            except OSError as exc:
                raise FrontendError(bind_error(addr, exc.strerror or str(exc))) from None
        if supervisor is not None:
            await supervisor.wait_started()
    except (FrontendError, HttpError) as exc:
        log.error("%s", exc)
        await client_port.stop()
        await peer_port.stop()
        await _shutdown((server, peer_server), srv, supervisor, links, guards, sockdir, http)
        return 1
    log.info("member %x of cluster %x started (data dir %s); serving peers on %s, clients once ready",
             srv.member_id, srv.cluster_id, settings.data_dir, ", ".join(settings.listen_peer_urls))

    async def serve_clients() -> None:
        # etcd's embed waits for ReadyNotify before it serves a client listener: the sockets
        # listen already, so an early client's connection waits and is served now
        await srv.ready.wait()
        await server.start()
        await http.serve_clients()
        await client_port.serve()
        if supervisor is not None:
            supervisor.serve()
        log.info("serving client requests on %s (%s)", ", ".join(settings.listen_client_urls),
                 f"{count} front-end processes" if fronted else "in the member process")
        log.info("member %x of cluster %x is ready", srv.member_id, srv.cluster_id)

    serving = asyncio.create_task(serve_clients(), name="serve-clients")
    checks = (asyncio.create_task(corruption.run(settings.corrupt_check_interval))
              if settings.corrupt_check_interval > 0 else None)
    sd_ready = sdnotify.notify_ready(srv, f"serving clients on {', '.join(settings.listen_client_urls)}")
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(srv.stopped.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    log.info("shutting down")
    serving.cancel()
    if checks is not None:
        checks.cancel()
    sdnotify.notify_stopping(sd_ready)
    await client_port.stop()
    await peer_port.stop()
    await _shutdown((server, peer_server), srv, supervisor, links, guards, sockdir, http)
    failed = srv.fatal is not None
    return 1 if failed else 0


async def _abandon_frontends(supervisor: FrontendSupervisor | None, links: LinkServer | None,
                             guards: list[socket.socket], sockdir: str) -> None:
    """Undo what was started for the front-ends when the member itself cannot start."""
    if supervisor is not None:
        await supervisor.stop()
    if links is not None:
        await links.stop()
    for g in guards:
        g.close()
    if sockdir:
        shutil.rmtree(sockdir, ignore_errors=True)


async def _shutdown(
    servers: tuple[grpc.aio.Server, grpc.aio.Server], srv: EtcdServer, supervisor: FrontendSupervisor | None,
    links: LinkServer | None, guards: list[socket.socket], sockdir: str, http: HttpSide,
) -> None:
    """etcd's order (embed.Etcd.Close): the client side first, then the leadership transfer,
    then the peer side. ``servers`` is (client server, peer server)."""
    client_server, peer_server = servers
    await http.stop()
    # front-ends first: they finish the calls in flight, which the member still answers
    if supervisor is not None:
        await supervisor.stop()
    if links is not None:
        await links.stop()
    await client_server.stop(grace=1.0)
    # a leader hands over before it goes (etcd's EtcdServer.Stop); the peer server carries the
    # raft streams that tell it the new leader, so it stays up until then. It goes before the
    # member stops because it also serves the client API, which reads the backend stop() closes
    await leader_transfer.transfer_before_stop(srv)
    await peer_server.stop(grace=1.0)
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
    try:
        ensure_cipher_env(cfg.cipher_suites, args)
    except TLSFileError as exc:
        print(f"petcd cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
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
