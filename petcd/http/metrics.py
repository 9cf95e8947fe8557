"""``/metrics``: etcd's metric names, read from the member when Prometheus scrapes.

Nothing on the request path is instrumented for this: the collector reads what the member
already knows (leader, term, indexes, alarms, sizes, revisions, peer link stats) at scrape time.
The two latency histograms etcd dashboards rely on are recorded where the time is spent, in a
:class:`petcd.stats.Durations` (WAL fsync in the WAL thread, backend commit in the apply loop);
gRPC counters come from :mod:`petcd.http.grpcstats`. Process metrics (``process_*``) are
prometheus_client's, Python's runtime metrics stand where Go's ``go_*`` are in etcd.

Only values petcd really measures are exported: a metric etcd has and petcd does not measure
(e.g. ``etcd_mvcc_put_total``) is absent rather than a constant zero. Peer round trip times come
from probing each peer every few seconds over the peer URL, as etcd's prober does.

The families themselves are built in petcd.http.collector, which imports prometheus_client: it
is loaded on the first scrape (in a worker thread, so the loop keeps ticking meanwhile), not
with this module, so a member serves without paying for it.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from petcd.clock import Clock
from petcd.http.exposition import CONTENT_TYPE, write_text
from petcd.http.grpcstats import GrpcCounters
from petcd.http.health import HealthCounts
from petcd.http.server import Request, Streamed
from petcd.server.etcdserver import EtcdServer
from petcd.stats import Durations, exponential_buckets

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsEndpoint", "PeerLink", "PeerLinks", "PeerRoundTrips", "Probe"]


@dataclass(frozen=True, slots=True)
class PeerLink:
    """What /metrics shows of one peer link (the command reads it from the peer transport)."""

    peer_id: int
    connected: bool
    messages_dropped: int
    snapshots_sent: int
    snapshots_failed: int


PeerLinks = Callable[[], Iterable[PeerLink]]
# ask a peer who it is over the peer URL; the round trip time in seconds (raises when it cannot)
Probe = Callable[[int], Awaitable[float]]
# etcd's buckets for etcd_network_peer_round_trip_time_seconds: 0.1 ms to 3.2768 s
RTT_BUCKETS = exponential_buckets(0.0001, 2, 16)
# etcd probes each peer every few seconds
PROBE_INTERVAL = 5.0


class PeerRoundTrips:
    """Round trip times to each peer, measured by probing them in turn every PROBE_INTERVAL."""

    def __init__(self, clock: Clock, peers: PeerLinks, probe: Probe) -> None:
        self._clock = clock
        self._peers = peers
        self._probe = probe
        self.by_peer: dict[int, Durations] = {}

    async def run(self) -> None:
        while True:
            for p in list(self._peers()):
                try:
                    rtt = await self._probe(p.peer_id)
                except Exception:  # a peer that is down has no round trip to record
                    continue
                self.by_peer.setdefault(p.peer_id, Durations(RTT_BUCKETS)).observe(rtt)
            await self._clock.sleep(PROBE_INTERVAL)


_COLLECTOR = "petcd.http.collector"


class MetricsEndpoint:
    """Serves one member's registry (its collector, the process and the Python platform)."""

    def __init__(self, srv: EtcdServer, grpc: GrpcCounters, health: HealthCounts, peers: PeerLinks,
                 round_trips: PeerRoundTrips) -> None:
        # what the collector reads, handed over whole when it is built (on the first scrape)
        self._sources = (srv, grpc, health, peers, round_trips)

    @functools.cached_property
    def registry(self) -> CollectorRegistry:
        from petcd.http.collector import MemberCollector, new_registry  # lazy: see the module docstring

        return new_registry(MemberCollector(*self._sources))

    def text(self) -> bytes:
        return write_text(self.registry.collect())

    async def handle(self, req: Request) -> Streamed:
        if _COLLECTOR not in sys.modules:
            await asyncio.to_thread(importlib.import_module, _COLLECTOR)
        # etcd's /metrics answers any method, chunked
        return Streamed(200, [("Content-Type", CONTENT_TYPE)], _once(self.text()))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
