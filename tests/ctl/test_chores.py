"""The chores end to end on a 3-member petcd cluster, each in the state it repairs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ctl.helpers import petcdctl
from tests.harness import Etcdctl, Server, ServerGroup, free_ports, server_group
from tests.harness.procs import clean_env

QUOTA = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerGroup, list[Server]]]:
    with server_group(tmp_path_factory.mktemp("ctl-cluster")) as group:
        members = group.start_cluster("petcd", 3, extra_args=(f"--quota-backend-bytes={QUOTA}",))
        settle(members)
        yield group, members


def settle(members: list[Server], timeout: float = 20.0) -> None:
    """Until the members' statuses stop changing: a fresh cluster's first entries reach the
    database file with the next backend commit, which may come after the members are ready (and
    between the two tools' views of it)."""
    end = time.monotonic() + timeout
    last = statuses(members)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = statuses(members)
        if now == last:
            return
        last = now
    raise AssertionError(f"the members' statuses still change after {timeout:.0f}s: {last}")


def eps(members: list[Server]) -> list[str]:
    return [m.endpoint for m in members if m.is_running()]


def statuses(members: list[Server]) -> list[dict[str, int]]:
    r = Etcdctl(eps(members)).run("endpoint", "status", "-w", "json")
    assert r.rc == 0, r
    return [s["Status"] for s in json.loads(r.stdout)]


def fill(members: list[Server], n: int, size: int) -> None:
    ctl = Etcdctl(members[0].endpoint)
    for i in range(n):
        ctl.run("put", f"fill/{i % 4}", "x" * size)


def same_output(members: list[Server], *args: str, first: bool = False) -> None:
    """etcdctl and petcdctl, one right after the other, on the same cluster (nothing changes between)."""
    from tests.ctl.helpers import as_etcdctl
    from tests.harness import Normaliser

    # with several endpoints, which member answers is the balancer's choice (etcdctl's varies too)
    targets = eps(members)[:1] if first else eps(members)
    e = Etcdctl(targets).run(*args)
    p = as_etcdctl(petcdctl(targets, *args))
    norm = Normaliser()
    fmt = "json" if "json" in args else "simple"
    e, p = (type(e)(r.rc, norm.output(r.stdout, fmt), norm.stderr(r.stderr)) for r in (e, p))
    e_out, p_out = (re.sub(r'"took":"[^"]*"', "<TOOK>", r.stdout) for r in (e, p))
    assert (p.rc, p_out, p.stderr) == (e.rc, e_out, e.stderr), f"{args}\netcdctl:\n{e}\npetcdctl:\n{p}"


def test_cluster_views(cluster: tuple[ServerGroup, list[Server]]) -> None:
    _, members = cluster
    for args in (("endpoint", "status", "--cluster", "-w", "table"), ("endpoint", "status", "-w", "json"),
                 ("endpoint", "hashkv", "--cluster"), ("defrag", "--cluster"), ("defrag",), ("move-leader", "1")):
        same_output(members, *args)
    for args in (("member", "list", "-w", "table"), ("member", "list", "-w", "json"),
                 ("member", "list", "--hex", "-w", "json"), ("member", "list", "-w", "fields")):
        same_output(members, *args, first=True)


def test_defrag_safe_only_fragmented(cluster: tuple[ServerGroup, list[Server]]) -> None:
    _, members = cluster
    fill(members, 12, 64 * 1024)  # ~800 KiB of history on 4 keys
    rev = json.loads(Etcdctl(members[0].endpoint).run("get", "x", "-w", "json").stdout)["header"]["revision"]
    assert Etcdctl(members[0].endpoint).run("compaction", "--physical", str(rev)).rc == 0
    ok = petcdctl(eps(members), "defrag", "--cluster", "--safe", "--min-free=262144")
    assert ok.rc == 0, ok
    lines = ok.stdout.splitlines()
    # each member is judged on what it reports: defragmented exactly when dbSize - dbSizeInUse >= 256 KiB
    survey = {m.group(1): int(m.group(2)) - int(m.group(3)) for m in
              (re.match(r"  \S+ \S+ (\S+): ok, dbSize (\d+), dbSizeInUse (\d+)", ln) for ln in lines) if m}
    assert len(survey) == 3
    done = {ln.split("[")[1].split("]")[0] for ln in lines if "Finished defragmenting" in ln}
    assert done == {ep for ep, free in survey.items() if free >= 262144} and done, ok.stdout
    assert lines[-1] == f"defragmented {len(done)} of 3 members"
    order = [ln for ln in lines if ln.startswith(("  defragment ", "  skip "))]
    assert all("leader" not in ln for ln in order[:-1]) or "leader" in order[-1]
    again = petcdctl(eps(members), "defrag", "--cluster", "--safe", "--min-free=262144")
    assert again.rc == 0 and not (done & {ln.split("[")[1].split("]")[0] for ln in again.stdout.splitlines()
                                          if "Finished defragmenting" in ln}), again
    bad = petcdctl(eps(members), "defrag", "--safe")
    assert bad.rc == 128 and "--safe needs --cluster" in bad.stderr


def test_check_best_practices(cluster: tuple[ServerGroup, list[Server]], tmp_path: Path) -> None:
    _, members = cluster
    r = petcdctl(eps(members), "check", "best-practices")
    assert r.rc == 0, r
    assert "[UNKNOWN] 1. heartbeat interval" in r.stdout and "change:" in r.stdout
    flags = tmp_path / "petcd.env"
    flags.write_text("ETCD_HEARTBEAT_INTERVAL=100\nETCD_ELECTION_TIMEOUT=300\n"
                     f"ETCD_QUOTA_BACKEND_BYTES={QUOTA}\n")
    r = petcdctl(eps(members), "check", "best-practices", f"--flags-file={flags}", "--time-defrag")
    assert r.rc == 1, r
    assert "[WARN] 1. heartbeat interval: 100 ms" in r.stdout
    assert "[FAIL] 2. election timeout >= 5 x heartbeat: 300 ms vs 5 x 100 ms = 500 ms" in r.stdout
    assert "[FAIL] 4. periodic auto-compaction: not configured" in r.stdout
    assert "defragmenting follower" in r.stdout
    cfg = tmp_path / "etcd.yaml"
    cfg.write_text("heartbeat-interval: 1000\nelection-timeout: 5000\nquota-backend-bytes: 8589934592\n"
                   "auto-compaction-mode: periodic\nauto-compaction-retention: '1'\n")
    r = petcdctl(eps(members), "check", "best-practices", f"--config-file={cfg}")
    assert r.rc == 0 and "[PASS] 1." in r.stdout and "[PASS] 2." in r.stdout and "[PASS] 4." in r.stdout, r


def test_recover_nospace(cluster: tuple[ServerGroup, list[Server]]) -> None:
    _, members = cluster
    ctl = Etcdctl(members[0].endpoint)
    ctl.run("put", "keep/me", "precious")
    for i in range(200):
        r = ctl.run("put", f"big/{i % 3}", "y" * 100_000)
        if r.rc != 0:
            assert "database space exceeded" in r.stderr, r
            break
    else:
        pytest.fail("the quota was never reached")
    alarms = ctl.run("alarm", "list")
    assert "alarm:NOSPACE" in alarms.stdout, alarms
    for args in (("alarm", "list"), ("alarm", "list", "-w", "json"), ("alarm", "list", "-w", "fields"),
                 ("endpoint", "health", "-w", "json"), ("put", "more", "x")):
        same_output(members, *args, first=True)
    r = petcdctl(eps(members), "recover", "nospace")
    assert r.rc == 0, r
    out = r.stdout
    assert out.index("[2/5] compact") < out.index("[3/5] defragment") < out.index("[4/5] disarm") < out.index("[5/5]")
    assert out.count("Finished defragmenting") == 3 and "disarmed NOSPACE" in out and out.endswith("recovered\n")
    assert ctl.run("alarm", "list").stdout == ""
    assert ctl.run("put", "after", "ok").rc == 0
    assert ctl.run("get", "keep/me", "--print-value-only").stdout == "precious\n"  # nothing lost


def test_member_replace(cluster: tuple[ServerGroup, list[Server]], tmp_path: Path) -> None:
    group, members = cluster
    m1, m2, m3 = members
    refused = petcdctl([m1.endpoint], "member", "replace", "m1", "--peer-urls=http://127.0.0.1:1")
    assert refused.rc == 1 and "is healthy" in refused.stderr, refused  # healthy: only with --force
    before = Etcdctl(m1.endpoint).run("member", "list").stdout
    m3.kill9()
    m2.kill9()
    refused = petcdctl([m1.endpoint], "member", "replace", "m3", "--peer-urls=http://127.0.0.1:1", "--command-timeout=2s")
    assert refused.rc == 5 and "refusing" in refused.stderr, refused
    m2.start()
    assert Etcdctl(m1.endpoint).run("member", "list").stdout == before  # nothing changed
    client_port, peer_port = free_ports(2)
    data_dir = tmp_path / "m3-new.data"
    r = petcdctl([m1.endpoint, m2.endpoint], "member", "replace", "m3", f"--peer-urls=http://127.0.0.1:{peer_port}",
                 f"--client-urls=http://127.0.0.1:{client_port}", f"--data-dir={data_dir}")
    assert r.rc == 0, r
    assert "removed from cluster" in r.stdout and "added to cluster" in r.stdout
    start = shlex.split(r.stdout.strip().splitlines()[-1])
    assert start[0] == "petcd" and start[start.index("--initial-cluster-state") + 1] == "existing"
    cluster_arg = start[start.index("--initial-cluster") + 1]
    assert sorted(cluster_arg.split(",")) == sorted(
        [f"m1={m1.peer_url}", f"m2={m2.peer_url}", f"m3=http://127.0.0.1:{peer_port}"])
    log = (tmp_path / "m3-new.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "petcd", *start[1:]], stdout=log, stderr=subprocess.STDOUT,
                            env=clean_env(), start_new_session=True)
    try:
        new = Server("petcd", tmp_path, name="m3new", client_port=client_port, peer_port=peer_port)
        new._proc = proc  # wait on the process we started, by its own handle
        new.wait_ready(60)
        health = Etcdctl([m1.endpoint, m2.endpoint, f"127.0.0.1:{client_port}"]).run("endpoint", "health")
        assert health.rc == 0, health
        assert Etcdctl(f"127.0.0.1:{client_port}").run("get", "keep/me", "--print-value-only").stdout == "precious\n"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    _ = group
