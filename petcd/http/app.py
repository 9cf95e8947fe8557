"""What each HTTP listener serves: the client side (etcd's client-URL mux) and the metrics URLs.

Client URLs (``--listen-client-http-urls``, and the client URLs themselves when they carry
HTTP): ``/health``, ``/version``, ``/metrics``, ``/livez`` and ``/readyz`` (etcd 3.6's), and
under ``/v3/`` and ``/v3beta/`` the JSON gateway when ``--enable-grpc-gateway`` is on. Every
answer carries etcd's CORS headers and an OPTIONS request is answered by them alone, as etcd's
CORS wrapper does with its default ``--cors=*``.

Metrics URLs (``--listen-metrics-urls``): ``/metrics`` and ``/health`` only, no CORS headers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from petcd import ETCD_API_VERSION
from petcd.http.health import HealthChecker
from petcd.http.metrics import MetricsEndpoint
from petcd.http.responses import method_not_allowed, not_found, redirect_to_subtree
from petcd.http.server import Handler, Request, Response, Streamed
from petcd.server.etcdserver import EtcdServer

__all__ = ["client_handler", "metrics_handler"]

Gateway = Callable[[Request, str], Awaitable[Response | Streamed]]
_CORS = [
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Origin", "*"),
]
_GATEWAY_ROOTS = ("/v3/", "/v3beta/")


def version_response(srv: EtcdServer, req: Request) -> Response:
    if req.method != "GET":
        return method_not_allowed()
    body = json.dumps({"etcdserver": ETCD_API_VERSION,
                       "etcdcluster": srv.membership.cluster_version or "not_decided"},
                      separators=(",", ":")).encode()
    return Response(200, [("Content-Type", "application/json")], body)


def client_handler(srv: EtcdServer, health: HealthChecker, metrics: MetricsEndpoint,
                   gateway: Gateway | None) -> Handler:
    async def route(req: Request) -> Response | Streamed:
        path = req.path
        if path == "/health":
            return await health.health(req)
        if path == "/version":
            return version_response(srv, req)
        if path == "/metrics":
            return await metrics.handle(req)
        if path == "/livez":
            return await health.livez(req)
        if path == "/readyz":
            return await health.readyz(req)
        if gateway is not None:
            for root in _GATEWAY_ROOTS:
                if path.startswith(root):
                    return await gateway(req, path[len(root) - 1:])
            if path == "/v3":  # Go's mux redirects to the registered subtree (/v3beta/ is a rewrite)
                return redirect_to_subtree("/v3/")
        return not_found()

    async def handle(req: Request) -> Response | Streamed:
        if req.method == "OPTIONS":
            return Response(200, list(_CORS))
        resp = await route(req)
        resp.headers.extend(_CORS)
        return resp

    return handle


def metrics_handler(health: HealthChecker, metrics: MetricsEndpoint) -> Handler:
    async def handle(req: Request) -> Response | Streamed:
        if req.path == "/metrics":
            return await metrics.handle(req)
        if req.path == "/health":
            return await health.health(req)
        return not_found()

    return handle
