"""petcd-benchmark's --user (log in once, send the token) and --target-leader, on petcd and etcd
3.5.1; and --sample's per-second rows."""

from __future__ import annotations

import pytest

from tests.benchmark.helpers import Grpc, assert_keys, bench, summaries, varint_key
from tests.harness import Etcdctl, ServerGroup

pytestmark = pytest.mark.etcd


@pytest.mark.parametrize("kind", ["etcd", "petcd"])
def test_user_and_target_leader(servers: ServerGroup, kind: str) -> None:
    srv = servers.start("etcd") if kind == "etcd" else servers.start_target()
    ctl = Etcdctl(srv.endpoint)
    for args in (("user", "add", "root:rootpw"), ("user", "grant-role", "root", "root"), ("auth", "enable")):
        assert ctl.run(*args).rc == 0
    denied = bench("--endpoints", srv.endpoint, "put", "--total", "3")
    assert denied.rc == 1 and "etcdserver: user name is empty" in denied.stdout, denied
    r = bench("--endpoints", srv.endpoint, "--user", "root:rootpw", "--target-leader", "--clients", "2",
              "put", "--total", "20", "--sequential-keys", "--key-space-size", "20", "--key-size", "4", "--sample")
    assert r.rc == 0, r
    [s] = summaries(r.stdout)
    assert s.ok == 20
    rows = r.stdout.split("UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n")[1]
    assert sum(int(line.split(",")[4]) for line in rows.strip().splitlines()) == 20
    bad = bench("--endpoints", srv.endpoint, "--user", "root:wrong", "put", "--total", "1")
    assert bad.rc == 1 and "bad user information: root" in bad.stderr, bad
    assert ctl.run("--user", "root:rootpw", "auth", "disable").rc == 0
    c = Grpc(srv.endpoint)
    try:
        assert_keys(c, [varint_key(i, 4) for i in range(20)], 8)
    finally:
        c.close()

