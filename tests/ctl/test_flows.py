"""Multi-step flows (leases, auth, membership, snapshots), each step run by etcdctl and by petcdctl
on its own names, compared after normalisation; on real etcd 3.5.1 and on petcd."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ctl.helpers import as_etcdctl, petcdctl
from tests.harness import ETCDUTL_BIN, CtlResult, Etcdctl, Normaliser, Server, free_ports, output_format
from tests.harness.procs import clean_env

Runner = Callable[..., CtlResult]


def tools(server: Server) -> dict[str, Runner]:
    return {
        "etcdctl": lambda *a, **kw: Etcdctl(server.endpoint).run(*a, **kw),
        "petcdctl": lambda *a, **kw: as_etcdctl(petcdctl(server.endpoint, *a, **kw)),
    }


def same(server: Server, steps: list[tuple[str, ...]], names: dict[str, dict[str, str]] | None = None) -> None:
    """Each tool runs all the steps ({n} is the tool's own name); outputs must match step by step."""
    got: dict[str, list[CtlResult]] = {}
    for tool, run in tools(server).items():
        norm = Normaliser.for_servers([server])
        subst = {"n": f"n-{len(got)}x", **(names or {}).get(tool, {})}
        for v in subst.values():
            norm.replacements[v] = "<NAME>"
        got[tool] = []
        captured: dict[str, str] = {}
        for st in steps:
            argv = [a.format(**subst, **captured) for a in st]
            res = run(*argv)
            m = re.search(r"lease ([0-9a-f]{16}) granted", res.stdout)
            if m:
                captured["L"] = m.group(1)
            r = norm.result(res, output_format(argv))
            # a remaining TTL (below the 600 s granted) ticks between the two runs
            got[tool].append(CtlResult(r.rc, re.sub(r'"TTL" : 5\d\d\n', '"TTL" : <TTL>\n', r.stdout), r.stderr))
    for i, st in enumerate(steps):
        assert got["petcdctl"][i] == got["etcdctl"][i], f"step {st}:\netcdctl:\n{got['etcdctl'][i]}\npetcdctl:\n{got['petcdctl'][i]}"


def test_lease_flow(server: Server) -> None:
    same(server, [
        ("lease", "grant", "600"),
        ("lease", "timetolive", "{L}"),
        ("lease", "timetolive", "{L}", "-w", "json"),
        ("put", "{n}/k", "v", "--lease={L}"),
        ("lease", "timetolive", "{L}", "--keys"),
        ("lease", "timetolive", "{L}", "--keys", "-w", "fields"),
        ("lease", "keep-alive", "--once", "{L}"),
        ("lease", "keep-alive", "--once", "{L}", "-w", "json"),
        ("lease", "revoke", "{L}"),
        ("lease", "revoke", "{L}"),
        ("get", "{n}/k"),
        ("lease", "timetolive", "{L}"),
        ("lease", "keep-alive", "--once", "{L}"),
    ])


def test_member_learner_flow(server: Server) -> None:
    ports = {"etcdctl": free_ports(1)[0], "petcdctl": free_ports(1)[0]}
    for i, (tool, run) in enumerate(tools(server).items()):
        url = f"http://127.0.0.1:{ports[tool]}"
        add = run("member", "add", f"learner-{i}", f"--peer-urls={url}", "--learner")
        assert add.rc == 0, add
        norm = Normaliser.for_servers([server])
        norm.replacements[url] = "<NEW_PEER>"
        norm.replacements[f"learner-{i}"] = "<NAME>"
        text = norm.output(add.stdout, "simple")
        assert "Member <MEMBER2> added to cluster <CLUSTER>" in text
        assert 'ETCD_NAME="<NAME>"' in text and 'ETCD_INITIAL_CLUSTER_STATE="existing"' in text
        member_id = re.search(r"Member +([0-9a-f]+) added", add.stdout).group(1)  # type: ignore[union-attr]
        listed = run("member", "list")
        assert f"{member_id}, unstarted, , {url}, , true" in listed.stdout, listed
        upd = run("member", "update", member_id, f"--peer-urls={url}")
        assert upd.rc == 0 and "updated in cluster" in upd.stdout, upd
        prom = run("member", "promote", member_id)
        assert prom.rc == 1 and "can only promote a learner member which is in sync with leader" in prom.stderr, prom
        rm = run("member", "remove", member_id)
        assert rm.rc == 0 and "removed from cluster" in rm.stdout, rm
        again = run("member", "remove", member_id)
        assert again.rc == 1 and "member not found" in again.stderr, again


def test_snapshot_save(server: Server, tmp_path: Path) -> None:
    for i, (tool, run) in enumerate(tools(server).items()):
        path = tmp_path / f"snap{i}.db"
        r = run("snapshot", "save", str(path))
        assert r.rc == 0 and r.stdout == f"Snapshot saved at {path}\n", r
        norm = Normaliser.for_servers([server])
        events = [ln for ln in norm.stderr(r.stderr).splitlines() if ln]
        assert [re.sub(r'"(path|size)":"[^"]*"', "", e) for e in events][-1].endswith('"msg":"saved",}') or events
        assert not (tmp_path / f"snap{i}.db.part").exists(), tool
        if server.kind == "etcd":  # petcd's Snapshot RPC streams etcd's bbolt format in another change
            status = subprocess.run([str(ETCDUTL_BIN), "snapshot", "status", str(path)], capture_output=True,
                                    env=clean_env(), timeout=60)
            assert status.returncode == 0, status
        assert path.stat().st_size > 0
    many = as_etcdctl(petcdctl([server.endpoint, server.endpoint], "snapshot", "save", str(tmp_path / "x.db")))
    ref = Etcdctl([server.endpoint, server.endpoint]).run("snapshot", "save", str(tmp_path / "x.db"))
    assert (many.rc, many.stdout) == (ref.rc, ref.stdout)


@pytest.fixture
def etcd_only(etcd_server: Server) -> Server:
    return etcd_server


def test_auth_flow(etcd_only: Server) -> None:
    """Auth on real etcd 3.5.1 (petcd's server side is being wired in by another change)."""
    server = etcd_only
    same(server, [
        ("user", "add", "{n}:pw1"),
        ("user", "add", "{n}:pw1"),
        ("role", "add", "r-{n}"),
        ("role", "grant-permission", "r-{n}", "readwrite", "{n}/", "--prefix"),
        ("role", "grant-permission", "r-{n}", "read", "{n}a", "{n}z"),
        ("role", "grant-permission", "r-{n}", "bogus", "k"),
        ("role", "get", "r-{n}"),
        ("role", "get", "r-{n}", "-w", "fields"),
        ("user", "grant-role", "{n}", "r-{n}"),
        ("user", "get", "{n}"),
        ("user", "get", "{n}", "--detail"),
        ("user", "get", "{n}", "-w", "fields"),
        ("role", "revoke-permission", "r-{n}", "{n}/", "--prefix"),
        ("user", "revoke-role", "{n}", "r-{n}"),
        ("user", "passwd", "{n}", "--interactive=false"),
        ("role", "delete", "r-{n}"),
        ("user", "delete", "{n}"),
        ("user", "delete", "{n}"),
    ])
    runs = tools(server)
    for run in runs.values():
        run("user", "add", "root:rootpw")
        run("user", "grant-role", "root", "root")
        run("user", "add", "reader:pw")
    assert runs["etcdctl"]("auth", "enable").stdout == "Authentication Enabled\n"
    try:
        norm = Normaliser.for_servers([server])
        for args in (("--user=root:rootpw", "put", "a", "1"), ("--user=root:wrong", "get", "a"), ("get", "a"),
                     ("--user=root", "--password=rootpw", "get", "a"), ("--user=reader:pw", "put", "a", "2"),
                     ("--user=root:rootpw", "auth", "status"), ("--user=root:rootpw", "user", "list")):
            e, p = (norm.result(runs[t](*args)) for t in ("etcdctl", "petcdctl"))
            assert p == e, f"{args}\n{e}\n{p}"
    finally:
        assert runs["petcdctl"]("--user=root:rootpw", "auth", "disable").stdout == "Authentication Disabled\n"
    runs["etcdctl"]("user", "delete", "root")
    runs["etcdctl"]("user", "delete", "reader")
