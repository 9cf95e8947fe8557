"""The collector behind ``/metrics`` (see petcd.http.metrics): etcd's metric families, read
from the member at scrape time, and the prometheus_client registry that serves them with the
process and platform collectors.

Its own module because prometheus_client takes ~25 ms to import (its package pulls in
urllib.request, http.server, wsgiref): petcd.http.metrics imports it on the first scrape, so a
member does not pay for it before it serves.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from petcd import ETCD_API_VERSION
from petcd.http.exposition import go_float
from petcd.http.grpcstats import CODE_NAMES, GrpcCounters
from petcd.http.health import HealthCounts
from petcd.http.metrics import PeerLinks, PeerRoundTrips
from petcd.raft import StateType
from petcd.server.etcdserver import EtcdServer
from petcd.stats import Durations

__all__ = ["MemberCollector", "new_registry"]


def _family(name: str, doc: str, kind: str) -> Metric:
    return Metric(name, doc, kind)


def _one(name: str, doc: str, kind: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    m = _family(name, doc, kind)
    m.add_sample(name, labels or {}, value)
    return m


def _histogram(name: str, doc: str, d: Durations) -> Metric:
    m = _family(name, doc, "histogram")
    for bound, total in d.cumulative():
        m.add_sample(f"{name}_bucket", {"le": go_float(bound)}, total)
    m.add_sample(f"{name}_sum", {}, d.sum)
    m.add_sample(f"{name}_count", {}, d.count)
    return m


class MemberCollector:
    """A prometheus_client collector over one member."""

    def __init__(self, srv: EtcdServer, grpc: GrpcCounters, health: HealthCounts, peers: PeerLinks,
                 round_trips: PeerRoundTrips) -> None:
        self._srv = srv
        self._grpc = grpc
        self._health = health
        self._peers = peers
        self._round_trips = round_trips

    def collect(self) -> Iterator[Metric]:
        srv = self._srv
        yield from self._server(srv)
        yield from self._storage(srv)
        yield from self._network(srv)
        yield from self._grpc_families()

    def _server(self, srv: EtcdServer) -> Iterator[Metric]:
        version = srv.membership.cluster_version
        if version:
            yield _one("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with "
                       "current cluster version", "gauge", 1,
                       {"cluster_version": ".".join(version.split(".")[:2])})
        yield _one("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
                   "gauge", 1 if srv.leader else 0)
        yield _one("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                   "gauge", 1 if srv.role == StateType.LEADER else 0)
        yield _one("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
                   "gauge", 1 if srv.membership.is_learner(srv.member_id) else 0)
        yield _one("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", "counter",
                   srv.leader_changes)
        yield _one("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with "
                   "current ID.", "gauge", 1, {"server_id": f"{srv.member_id:x}"})
        yield _one("etcd_server_version", "Which version is running. 1 for 'server_version' label with current "
                   "version.", "gauge", 1, {"server_version": ETCD_API_VERSION})
        yield _one("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.",
                   "gauge", srv.committed_index)
        yield _one("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.",
                   "gauge", srv.applied_index)
        yield _one("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
                   "gauge", srv.proposals_pending)
        yield _one("etcd_server_proposals_failed_total", "The total number of failed proposals seen.", "counter",
                   srv.proposals_failed)
        yield _one("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", "gauge",
                   srv.settings.quota_backend_bytes)
        yield _one("etcd_server_health_success", "The total number of successful health checks", "counter",
                   self._health.success)
        yield _one("etcd_server_health_failures", "The total number of failed health checks", "counter",
                   self._health.failures)

    def _storage(self, srv: EtcdServer) -> Iterator[Metric]:
        backend = srv.backend
        yield _one("etcd_mvcc_db_total_size_in_bytes",
                   "Total size of the underlying database physically allocated in bytes.", "gauge", backend.size())
        yield _one("etcd_mvcc_db_total_size_in_use_in_bytes",
                   "Total size of the underlying database logically in use in bytes.", "gauge",
                   backend.size_in_use())
        yield _one("etcd_debugging_mvcc_current_revision", "The current revision of store.", "gauge", srv.store.rev)
        yield _one("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
                   "gauge", srv.store.compact_rev)
        yield _one("etcd_debugging_mvcc_keys_total", "Total number of keys.", "gauge", len(srv.store))
        wal = srv.raft.wal
        yield _histogram("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.",
                         wal.fsync_durations)
        yield _one("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.", "gauge",
                   wal.bytes_written)
        yield _histogram("etcd_disk_backend_commit_duration_seconds",
                         "The latency distributions of commit called by backend.", srv.backend_commit_durations)

    def _network(self, srv: EtcdServer) -> Iterator[Metric]:
        active = _family("etcd_network_active_peers", "The current number of active peer connections.", "gauge")
        dropped = _family("etcd_network_peer_sent_failures_total", "The total number of send failures from peers.",
                          "counter")
        snap_ok = _family("etcd_network_snapshot_send_success", "Total number of successful snapshot sends",
                          "counter")
        snap_fail = _family("etcd_network_snapshot_send_failures", "Total number of snapshot send failures",
                            "counter")
        local = f"{srv.member_id:x}"
        for p in self._peers():
            to = f"{p.peer_id:x}"
            if p.connected:
                active.add_sample(active.name, {"Local": local, "Remote": to}, 1)
            if p.messages_dropped:
                dropped.add_sample(dropped.name, {"To": to}, p.messages_dropped)
            if p.snapshots_sent:
                snap_ok.add_sample(snap_ok.name, {"To": to}, p.snapshots_sent)
            if p.snapshots_failed:
                snap_fail.add_sample(snap_fail.name, {"To": to}, p.snapshots_failed)
        yield from (active, dropped, snap_ok, snap_fail)
        rtt = _family("etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers",
                      "histogram")
        for peer_id, d in sorted(self._round_trips.by_peer.items()):
            peer = {"To": f"{peer_id:x}"}
            for bound, total in d.cumulative():
                rtt.add_sample(f"{rtt.name}_bucket", {**peer, "le": go_float(bound)}, total)
            rtt.add_sample(f"{rtt.name}_sum", peer, d.sum)
            rtt.add_sample(f"{rtt.name}_count", peer, d.count)
        yield rtt

    def _grpc_families(self) -> Iterator[Metric]:
        g = self._grpc
        started = _family("grpc_server_started_total", "Total number of RPCs started on the server.", "counter")
        handled = _family("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless "
                          "of success or failure.", "counter")
        received = _family("grpc_server_msg_received_total", "Total number of RPC stream messages received on the "
                           "server.", "counter")
        sent = _family("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.",
                       "counter")
        for path, (service, method, kind) in g.methods.items():
            labels = {"grpc_method": method, "grpc_service": service, "grpc_type": kind}
            started.add_sample(started.name, labels, g.started.get(path, 0))
            received.add_sample(received.name, labels, g.received.get(path, 0))
            sent.add_sample(sent.name, labels, g.sent.get(path, 0))
            for code, code_name in CODE_NAMES.items():
                handled.add_sample(handled.name, {**labels, "grpc_code": code_name}, g.handled.get((path, code), 0))
        yield from (started, handled, received, sent)
        if g.extensive:
            hist = _family("grpc_server_handling_seconds", "Histogram of response latency (seconds) of gRPC that "
                           "had been application-level handled by the server.", "histogram")
            for path, d in g.handling.items():
                service, method, kind = g.methods[path]
                labels = {"grpc_method": method, "grpc_service": service, "grpc_type": kind}
                for bound, total in d.cumulative():
                    hist.add_sample(f"{hist.name}_bucket", {**labels, "le": go_float(bound)}, total)
                hist.add_sample(f"{hist.name}_sum", labels, d.sum)
                hist.add_sample(f"{hist.name}_count", labels, d.count)
            yield hist


def new_registry(collector: MemberCollector) -> CollectorRegistry:
    """One member's registry: its collector, the process and the Python platform."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
