"""/health, /version, /metrics, /livez, /readyz and the routing around them, against etcd 3.5.1.

etcd serves its HTTP side on the client URL; petcd (until the client port sniffs HTTP) on
--listen-client-http-urls, so the pair compares those. The metrics URLs are compared directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ServerGroup, server_group
from tests.http.helpers import HttpPair, raw, request, start_pair, wait_for


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpPair]:
    with server_group(tmp_path_factory.mktemp("http")) as group:
        yield start_pair(group)


CLIENT_CASES = [
    ("GET", "/health"), ("GET", "/health?exclude=NOSPACE"), ("GET", "/health?serializable=true"),
    ("POST", "/health"), ("PUT", "/health"), ("DELETE", "/health"), ("HEAD", "/health"),
    ("GET", "/version"), ("POST", "/version"), ("OPTIONS", "/health"), ("OPTIONS", "/anything"),
    ("GET", "/nope"), ("GET", "/health/"), ("GET", "/HEALTH"), ("GET", "/version/"), ("GET", "/metrics/"),
    ("GET", "/v3"), ("GET", "/v3beta"), ("GET", "/v3alpha/kv/range"),
]


@pytest.mark.parametrize(("method", "path"), CLIENT_CASES)
def test_client_url_answers_as_etcd(pair: HttpPair, method: str, path: str) -> None:
    want = request(pair.etcd_http, method, path)
    got = request(pair.petcd_http, method, path)
    assert got.shape() == want.shape()
    assert got.header_names() == want.header_names()
    assert got.header("Allow") == want.header("Allow")
    assert got.header("Location") == want.header("Location")


METRICS_CASES = [("GET", "/health"), ("POST", "/health"), ("OPTIONS", "/health"), ("GET", "/version"),
                 ("GET", "/v3/kv/range"), ("GET", "/nope")]


@pytest.mark.parametrize(("method", "path"), METRICS_CASES)
def test_metrics_url_answers_as_etcd(pair: HttpPair, method: str, path: str) -> None:
    want = request(pair.etcd_metrics, method, path)
    got = request(pair.petcd_metrics, method, path)
    assert got.shape() == want.shape()
    assert got.header_names() == want.header_names()


def test_health_counts_and_version_values(pair: HttpPair) -> None:
    body = request(pair.petcd_http, "GET", "/version").json()
    assert body == {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}


@pytest.mark.parametrize("where", ["http", "metrics"])
def test_metrics_parse_with_etcd_core_names(pair: HttpPair, where: str) -> None:
    url = pair.petcd_http if where == "http" else pair.petcd_metrics
    want = request(pair.etcd_metrics, "GET", "/metrics")
    got = request(url, "GET", "/metrics")
    assert got.status == want.status == 200
    assert got.header("Content-Type") == want.header("Content-Type")
    assert got.header("Transfer-Encoding") == want.header("Transfer-Encoding") == "chunked"
    etcd_types = {f.name: f.type for f in text_string_to_metric_families(want.body.decode())}
    ours = {f.name: f for f in text_string_to_metric_families(got.body.decode())}
    core = [
        "etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
        "etcd_server_leader_changes_seen", "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total", "etcd_server_proposals_pending", "etcd_server_proposals_failed",
        "etcd_server_quota_backend_bytes", "etcd_server_id", "etcd_server_version", "etcd_cluster_version",
        "etcd_server_health_success", "etcd_server_health_failures",
        "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_debugging_mvcc_current_revision", "etcd_debugging_mvcc_compact_revision",
        "etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
        "etcd_disk_wal_write_bytes_total", "grpc_server_handled", "grpc_server_started",
        "grpc_server_msg_received", "grpc_server_msg_sent", "process_resident_memory_bytes",
    ]
    for name in core:
        assert name in ours, name
        assert ours[name].type == etcd_types[name], name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in ours.values() for s in f.samples}
    assert samples[("etcd_server_has_leader", ())] == 1
    assert samples[("etcd_server_is_leader", ())] == 1
    assert samples[("etcd_server_version", (("server_version", "3.5.1"),))] == 1
    assert samples[("etcd_cluster_version", (("cluster_version", "3.5"),))] == 1
    assert samples[("etcd_server_quota_backend_bytes", ())] == 2 * 1024**3
    ids = [dict(k[1])["server_id"] for k in samples if k[0] == "etcd_server_id"]
    assert ids == [f"{pair.petcd.ids().member_id:x}"]
    # the same label sets as etcd for the gRPC counters of etcd's own services
    def handled(text: str) -> set[tuple[tuple[str, str], ...]]:
        return {tuple(sorted(s.labels.items())) for f in text_string_to_metric_families(text)
                if f.name == "grpc_server_handled" for s in f.samples
                if not s.labels["grpc_service"].startswith("grpc.health")}
    assert handled(got.body.decode()) >= handled(want.body.decode())


def _value(url: str, name: str, **labels: str) -> float:
    text = request(url, "GET", "/metrics").body.decode()
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"{name} {labels} not exported")


def test_metrics_move_with_the_member(pair: HttpPair) -> None:
    url = pair.petcd_metrics
    before = {n: _value(url, n) for n in ("etcd_server_proposals_committed_total",
                                          "etcd_server_proposals_applied_total",
                                          "etcd_disk_wal_fsync_duration_seconds_count",
                                          "etcd_debugging_mvcc_current_revision",
                                          "etcd_server_health_success_total")}
    puts = _value(url, "grpc_server_handled_total", grpc_method="Put", grpc_code="OK")
    for i in range(3):
        pair.petcd_ctl("put", f"metrics/k{i}", "v")
    assert request(pair.petcd_http, "GET", "/health").status == 200
    after = {n: _value(url, n) for n in before}
    assert after["etcd_server_proposals_committed_total"] >= before["etcd_server_proposals_committed_total"] + 3
    assert after["etcd_server_proposals_applied_total"] >= before["etcd_server_proposals_applied_total"] + 3
    assert after["etcd_disk_wal_fsync_duration_seconds_count"] > before["etcd_disk_wal_fsync_duration_seconds_count"]
    assert after["etcd_debugging_mvcc_current_revision"] == before["etcd_debugging_mvcc_current_revision"] + 3
    assert after["etcd_server_health_success_total"] == before["etcd_server_health_success_total"] + 1
    assert _value(url, "grpc_server_handled_total", grpc_method="Put", grpc_code="OK") == puts + 3


@pytest.mark.parametrize("data", [b"GARBAGE\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"])
def test_malformed_request_is_a_bare_400(pair: HttpPair, data: bytes) -> None:
    # etcd's metrics URL is a plain Go server (its client URL first sniffs for HTTP/1 or HTTP/2
    # and drops a connection that is neither)
    want = raw(pair.etcd_metrics, data)
    assert want.startswith(b"HTTP/1.1 400 Bad Request")
    assert raw(pair.petcd_metrics, data) == want
    assert raw(pair.petcd_http, data) == want


def test_malformed_request_after_a_valid_line_on_the_client_url(pair: HttpPair) -> None:
    data = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"
    assert raw(pair.petcd_http, data) == raw(pair.etcd_http, data)


def test_livez_readyz_follow_etcd_36(pair: HttpPair) -> None:
    # etcd 3.5.1 has neither (404); petcd answers as etcd 3.6 documents
    assert request(pair.etcd_http, "GET", "/livez").status == 404
    live = request(pair.petcd_http, "GET", "/livez")
    assert (live.status, live.body) == (200, b"ok\n")
    ready = request(pair.petcd_http, "GET", "/readyz?verbose")
    assert ready.status == 200
    assert ready.body == b"[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n"
    excluded = request(pair.petcd_http, "GET", "/readyz?verbose&exclude=linearizable_read")
    assert b"[+]linearizable_read excluded: ok\n" in excluded.body
    assert request(pair.petcd_http, "POST", "/livez").status == 405


def test_https_listener_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    group = ServerGroup(tmp_path_factory.mktemp("https"))
    try:
        with pytest.raises(Exception, match=r"not healthy|exited"):
            group.start("petcd", extra_args=["--listen-metrics-urls=https://127.0.0.1:1"])
        assert "petcd serves no TLS on this listener yet" in group.servers[0].log_tail()
    finally:
        group.close()


def test_stream_calls_are_counted(pair: HttpPair) -> None:
    """Streams relayed by the front-ends reach the member's gRPC server, whose interceptor counts
    them (unary calls are counted where the member answers the front-ends' links)."""
    url = pair.petcd_metrics
    labels = {"grpc_method": "LeaseKeepAlive", "grpc_service": "etcdserverpb.Lease"}
    started = _value(url, "grpc_server_started_total", **labels)
    handled = _value(url, "grpc_server_handled_total", grpc_code="OK", **labels)
    received = _value(url, "grpc_server_msg_received_total", **labels)
    lease = pair.petcd_ctl("lease", "grant", "60").split()[1]
    pair.petcd_ctl("lease", "keep-alive", "--once", lease)
    assert _value(url, "grpc_server_started_total", **labels) == started + 1
    assert _value(url, "grpc_server_msg_received_total", **labels) >= received + 1
    # etcdctl ends its stream by going away: the call ends Canceled or OK, either way handled
    def ended() -> bool:
        return sum(_value(url, "grpc_server_handled_total", grpc_code=c, **labels)
                   for c in ("OK", "Canceled")) >= handled + 1
    wait_for(ended, what="the stream counted as handled")


def test_metrics_extensive_adds_handling_time(tmp_path_factory: pytest.TempPathFactory) -> None:
    with server_group(tmp_path_factory.mktemp("extensive")) as group:
        ext = start_pair(group, ["--metrics=extensive"])
        ext.etcd_ctl("put", "ext/k", "v")
        ext.petcd_ctl("put", "ext/k", "v")

        def series(url: str) -> dict[tuple[tuple[str, str], ...], float]:
            text = request(url, "GET", "/metrics").body.decode()
            return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
                    if f.name == "grpc_server_handling_seconds" for s in f.samples
                    if s.name.endswith("_count") and not s.labels["grpc_service"].startswith("grpc.health")}
        want, got = series(ext.etcd_metrics), series(ext.petcd_metrics)
        assert set(got) >= set(want)
        put = (("grpc_method", "Put"), ("grpc_service", "etcdserverpb.KV"), ("grpc_type", "unary"))
        assert got[put] == want[put] == 1


def test_metrics_basic_has_no_handling_time(pair: HttpPair) -> None:
    assert b"grpc_server_handling_seconds" not in request(pair.petcd_metrics, "GET", "/metrics").body
    assert b"grpc_server_handling_seconds" not in request(pair.etcd_metrics, "GET", "/metrics").body
