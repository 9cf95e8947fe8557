"""The HTTP side of a member: /health, /livez, /readyz, /version, /metrics and the v3 JSON gateway.

``HttpSide`` is built whole from the member and what the command hands in (etcd's error texts
from ``petcd.api``, the peer links from ``petcd.peer``, the gateway's way to call the API), and
``start()`` opens its listeners: ``--listen-client-http-urls`` (the client-URL mux) and
``--listen-metrics-urls`` (metrics and health only). The listeners speak plain HTTP/1.1; an
``https://`` or ``unixs://`` URL is refused, never served in plain text.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from petcd.clock import Clock
from petcd.http.app import Gateway, client_handler, metrics_handler
from petcd.http.grpcstats import GrpcCounters
from petcd.http.health import ErrorText, HealthChecker
from petcd.http.metrics import MetricsEndpoint, PeerLinks, PeerRoundTrips, Probe
from petcd.http.server import Handler, HttpServer
from petcd.server.etcdserver import EtcdServer

__all__ = ["GrpcCounters", "HttpError", "HttpSide"]


class HttpError(Exception):
    """A listener could not be opened (the message says which and why)."""


class HttpSide:
    def __init__(self, srv: EtcdServer, clock: Clock, error_text: ErrorText, peers: PeerLinks, probe: Probe,
                 grpc_counters: GrpcCounters, gateway: Gateway | None) -> None:
        self.health = HealthChecker(srv, error_text)
        self.round_trips = PeerRoundTrips(clock, peers, probe)
        self.metrics = MetricsEndpoint(srv, grpc_counters, self.health.counts, peers, self.round_trips)
        self._tasks: list[asyncio.Task[None]] = []
        self.client = client_handler(srv, self.health, self.metrics, gateway)
        self.metrics_only = metrics_handler(self.health, self.metrics)
        self._clock = clock
        self.client_server = HttpServer(self.client, clock)
        self.metrics_server = HttpServer(self.metrics_only, clock)

    async def start(self, client_http_urls: Sequence[str], metrics_urls: Sequence[str]) -> None:
        """Open the listeners. The metrics URLs are served at once; the client HTTP URLs only
        from ``serve_clients()`` (etcd serves no client URL before the member is ready, and its
        metrics URLs from the start)."""
        self._tasks.append(asyncio.create_task(self.round_trips.run(), name="peer-round-trips"))
        for url in client_http_urls:
            await _listen(self.client_server, url, serve=False)
        for url in metrics_urls:
            await _listen(self.metrics_server, url)

    async def serve_clients(self) -> None:
        await self.client_server.serve()

    async def serve_client_unix(self, path: str) -> None:
        """Serve the client side on a Unix socket too (the client ports' sniffer relays HTTP/1
        connections to it)."""
        await self.client_server.listen_unix(path)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.client_server.stop()
        await self.metrics_server.stop()

    def handler(self) -> Handler:
        return self.client


async def _listen(server: HttpServer, url: str, serve: bool = True) -> None:
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "unix"):
        raise HttpError(f"{url}: petcd serves its HTTP listeners in plain text only, so a {scheme}:// "
                        "URL is refused")
    try:
        if scheme == "unix":
            if os.path.exists(rest):
                os.unlink(rest)
            await server.listen_unix(rest, serve)
            return
        host, _, port = rest.split("/", 1)[0].rpartition(":")
        await server.listen(host.strip("[]") or "0.0.0.0", int(port), serve)
    except OSError as exc:
        raise HttpError(f"listen {url}: {exc.strerror or exc}") from None
