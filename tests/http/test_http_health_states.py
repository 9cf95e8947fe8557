"""/health (and /metrics) of members in trouble, against etcd 3.5.1: NOSPACE and no leader."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import LOOPBACK, Kind, Server, diff_target_kind, free_ports, server_group
from tests.http.helpers import request, start_pair, wait_for


def _fill_until_nospace(url: str) -> dict[str, object]:
    value = base64.b64encode(b"x" * 100_000).decode()
    for i in range(200):
        a = request(url, "POST", "/v3/kv/put", json.dumps({"key": base64.b64encode(f"fill/{i}".encode()).decode(),
                                                         "value": value}).encode())
        if a.status != 200:
            result: dict[str, object] = {"status": a.status, **a.json()}
            return result
    raise AssertionError("the quota never filled")


def test_nospace(tmp_path: Path) -> None:
    with server_group(tmp_path) as group:
        pair = start_pair(group, ["--quota-backend-bytes=2000000"])
        refusals = [_fill_until_nospace(u) for u in (pair.etcd_http, pair.petcd_http)]
        assert refusals[1] == refusals[0]
        # the alarm is raised through raft just after the refusal, on both
        for url in (pair.etcd_http, pair.petcd_http):
            wait_for(lambda url=url: request(url, "GET", "/health").status == 503, timeout=10, what="the alarm")
        for path in ("/health", "/health?exclude=NOSPACE", "/health?exclude=CORRUPT", "/health?serializable=true"):
            want = request(pair.etcd_http, "GET", path)
            got = request(pair.petcd_http, "GET", path)
            assert got.shape() == want.shape(), path
            assert got.header_names() == want.header_names(), path
            assert request(pair.petcd_metrics, "GET", path).shape() == request(pair.etcd_metrics, "GET", path).shape()
        assert request(pair.etcd_http, "GET", "/health").body == b'{"health":"false","reason":"ALARM NOSPACE"}\n'
        # readyz looks at CORRUPT only (etcd 3.6)
        assert request(pair.petcd_http, "GET", "/readyz").status == 200

        def failures(url: str) -> float:
            fams = text_string_to_metric_families(request(url, "GET", "/metrics").body.decode())
            return next(s.value for f in fams for s in f.samples if s.name == "etcd_server_health_failures_total")
        assert failures(pair.petcd_metrics) >= 2


def _cluster(root: Path, kind: Kind, http_ports: Sequence[int]) -> list[Server]:
    ports = free_ports(6)
    names = ["m1", "m2", "m3"]
    initial = ",".join(f"{n}=http://{LOOPBACK}:{ports[2 * i + 1]}" for i, n in enumerate(names))
    members = [
        Server(kind, root / n, name=n, label=f"{kind}-{n}", client_port=ports[2 * i], peer_port=ports[2 * i + 1],
               initial_cluster=initial,
               extra_args=[f"--listen-metrics-urls=http://{LOOPBACK}:{http_ports[i]}"])
        for i, n in enumerate(names)
    ]
    for m in members:
        m.spawn()
    for m in members:
        m.wait_ready()
    return members


def _health(url: str, path: str = "/health") -> tuple[int, bytes]:
    a = request(url, "GET", path, timeout=30)
    return a.status, a.body


def _metric(url: str, name: str, missing: float | None = None) -> float:
    """The first sample called name; missing (when given) if the member has none yet."""
    fams = text_string_to_metric_families(request(url, "GET", "/metrics").body.decode())
    found = [s.value for f in fams for s in f.samples if s.name == name]
    if found:
        return found[0]
    if missing is None:
        raise AssertionError(f"no sample {name} at {url}")
    return missing


@pytest.mark.parametrize("kind", ["etcd", diff_target_kind()])
def test_no_leader_and_leader_changes(tmp_path: Path, kind: Kind) -> None:
    """Two of three members stopped: the last one has no leader. Before that, stopping the
    leader makes the others elect a new one, which leader_changes_seen_total counts."""
    http_ports = free_ports(3)
    urls = [f"http://{LOOPBACK}:{p}" for p in http_ports]
    members = _cluster(tmp_path, kind, http_ports)
    try:
        leader = wait_for(lambda: [i for i, u in enumerate(urls) if _metric(u, "etcd_server_is_leader") == 1],
                          what="a leader")[0]
        others = [i for i in range(3) if i != leader]
        before = {i: _metric(urls[i], "etcd_server_leader_changes_seen_total") for i in others}
        assert all(_metric(urls[i], "etcd_server_has_leader") == 1 for i in range(3))
        # petcd's peer round trip times, one histogram per peer (probed every few seconds; not
        # compared: etcd's prober publishes on its own schedule)
        if kind != "etcd":
            wait_for(lambda: _metric(urls[0], "etcd_network_peer_round_trip_time_seconds_count", 0.0) > 0,
                     timeout=20, what="a peer round trip measured")
        members[leader].stop()
        wait_for(lambda: any(_metric(urls[i], "etcd_server_is_leader") == 1 for i in others), timeout=30,
                 what="a new leader")
        for i in others:
            wait_for(lambda i=i: _metric(urls[i], "etcd_server_leader_changes_seen_total") == before[i] + 1,
                     what="the leader change counted")
        members[others[0]].stop()
        last = urls[others[1]]
        wait_for(lambda: _health(last)[0] == 503, timeout=30, what="/health to fail")
        assert _health(last) == (503, b'{"health":"false","reason":"RAFT NO LEADER"}\n')
        assert _metric(last, "etcd_server_has_leader") == 0
        serializable = _health(last, "/health?serializable=true")
        if kind == "etcd":
            # etcd 3.5.1 has no serializable health check yet: the parameter changes nothing
            assert serializable == (503, b'{"health":"false","reason":"RAFT NO LEADER"}\n')
        else:
            # petcd answers as etcd 3.5.3+ does: the member itself can still serve a local read
            assert serializable == (200, b'{"health":"true","reason":""}')
    finally:
        for m in members:
            m.stop()
