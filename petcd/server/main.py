"""The ``petcd`` command: parse etcd's flags, start one member, serve until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

import grpc

from petcd.api.kv import KVServicer
from petcd.api.lease import register as register_lease
from petcd.api.maintenance import ClusterServicer, MaintenanceServicer
from petcd.api.watch import register as register_watch
from petcd.peer import add_to_server as add_peer_service
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server.bootstrap import BootstrapError
from petcd.server.config import ConfigError, ServerConfig, best_practice_warnings, load_config_or_exit
from petcd.server.etcdserver import EtcdServer
from petcd.server.settings_from_config import settings_from_config
from petcd.wal import WAL, WALError

log = logging.getLogger("petcd")


def grpc_address(url: str) -> str:
    """The address gRPC binds for a listen URL (http://h:p, https://h:p, unix://path)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("unix", "unixs"):
        return f"unix:{rest}"
    return rest.split("/", 1)[0]


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_grpc_server(srv: EtcdServer) -> grpc.aio.Server:
    s = srv.settings
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", s.max_recv_message_bytes),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_concurrent_streams", 2**31 - 1),
            # a second process on the same port must fail, as etcd's does
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ]
    )
    pb_grpc.add_KVServicer_to_server(KVServicer(srv), server)
    pb_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(srv), server)
    pb_grpc.add_ClusterServicer_to_server(ClusterServicer(srv), server)
    register_lease(srv, server)
    register_watch(srv, server)
    assert srv.peering is not None
    add_peer_service(srv.peering.transport, server)
    return server


async def serve(cfg: ServerConfig) -> int:
    settings = settings_from_config(cfg)
    srv = EtcdServer(settings)
    try:
        await srv.start()
    except (BootstrapError, WALError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    server = build_grpc_server(srv)
    urls = list(dict.fromkeys([*cfg.listen_client_urls_str, *cfg.listen_peer_urls_str]))
    for url in urls:
        addr = grpc_address(url)
        try:
            server.add_insecure_port(addr)
        except RuntimeError:
            log.error("listen tcp %s: bind: address already in use", addr)
            await srv.stop()
            return 1
    await server.start()
    log.info("serving client requests on %s", ", ".join(urls))
    log.info("member %x of cluster %x is ready (data dir %s)", srv.member_id, srv.cluster_id, settings.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(srv.stopped.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    log.info("shutting down")
    await server.stop(grace=1.0)
    await srv.stop()
    failed = srv.driver is not None and srv.driver.fatal is not None
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = load_config_or_exit(args, os.environ)
    if not WAL.exists(cfg.wal_path):
        # etcd checks --initial-cluster against this member only when it has no data yet
        try:
            cfg.check_bootstrap()
        except ConfigError as exc:
            print(exc.message, file=sys.stderr)
            sys.exit(exc.exit_code)
    setup_logging(cfg.effective_log_level)
    for warning in cfg.warnings:
        log.warning("%s", warning)
    for warning in best_practice_warnings(cfg):
        log.warning("%s", warning)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without it
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(runner(serve(cfg)))
