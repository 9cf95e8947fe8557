"""petcdctl against etcdctl 3.5.1, both talking to the same server: same stdout, stderr and exit code
after normalisation (ids, revisions, times). The server is petcd, and real etcd 3.5.1 for the cases
where the two servers' answers could hide a difference."""

from __future__ import annotations

import itertools

import pytest

from tests.ctl.helpers import as_etcdctl, petcdctl
from tests.harness import Etcdctl, Normaliser, Server, output_format

_n = itertools.count()


def compare(server: Server, *args: str, stdin: str = "", fresh_state: bool = False) -> None:
    """Run args with etcdctl, then petcdctl; {p} in args is a per-run key prefix."""
    prefix = f"k{next(_n)}/"
    results = []
    for tool in ("etcdctl", "petcdctl"):
        p = prefix + tool + "/"
        argv = [a.replace("{p}", p) for a in args]
        text = stdin.replace("{p}", p)
        res = (Etcdctl(server.endpoint).run(*argv, stdin=text) if tool == "etcdctl"
               else as_etcdctl(petcdctl(server.endpoint, *argv, stdin=text)))
        norm = Normaliser.for_servers([server])
        norm.replacements[p] = "<P>/"
        res = norm.result(res, output_format(argv))
        results.append(res)
    assert results[1] == results[0], f"etcdctl:\n{results[0]}\npetcdctl:\n{results[1]}"


@pytest.fixture(scope="module")
def srv(server: Server) -> Server:
    """Real etcd 3.5.1 and petcd in turn: the same commands, compared on each server."""
    return server


KV_CASES = [
    ("put", "{p}a", "1"),
    ("put", "{p}a", "2", "--prev-kv"),
    ("put", "{p}a", "3", "-w", "json"),
    ("put", "{p}a", "3", "-w", "fields"),
    ("put", "{p}a", "4", "-w", "table"),
    ("put", "{p}a"),
    ("put", "{p}a", "x", "--lease=zz"),
    ("get", "{p}", "--prefix"),
    ("get", "{p}", "--prefix", "-w", "json"),
    ("get", "{p}", "--prefix", "-w", "fields"),
    ("get", "{p}", "--prefix", "--keys-only"),
    ("get", "{p}", "--prefix", "--print-value-only"),
    ("get", "{p}", "--prefix", "--count-only", "-w", "fields"),
    ("get", "{p}", "--prefix", "--count-only"),
    ("get", "{p}", "--prefix", "--limit=1", "-w", "json"),
    ("get", "{p}", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"),
    ("get", "{p}", "--prefix", "--sort-by=bogus"),
    ("get", "{p}", "--prefix", "--from-key"),
    ("get", "{p}missing"),
    ("get", "{p}missing", "-w", "json"),
    ("get", "{p}a", "--rev=100000"),
    ("get", "{p}a", "--hex"),
    ("get",),
    ("get", "{p}a", "--bogus"),
    ("get", "{p}a", "--limit=abc"),
    ("get", "{p}a", "-w", "yaml"),
    ("bogus",),
    ("del", "{p}missing"),
    ("del", "{p}", "--prefix", "--prev-kv"),
    ("del", "{p}", "--prefix", "-w", "json"),
    ("del",),
    ("compaction",),
    ("compaction", "abc"),
    ("compaction", "100000000"),
    ("version",),
    ("alarm", "list"),
    ("alarm", "list", "-w", "json"),
    ("alarm", "disarm"),
    ("member", "list", "-w", "json"),
    ("member", "list", "-w", "table"),
    ("member", "list"),
    ("member", "remove", "xyz"),
    ("member", "add", "x"),
    ("member", "add"),
    ("endpoint", "status", "-w", "json"),
    ("endpoint", "status", "-w", "fields"),
    ("endpoint", "status", "--cluster"),
    ("endpoint", "hashkv", "-w", "table"),
    ("lease", "grant", "abc"),
    ("lease", "revoke", "123"),
    ("lease", "timetolive", "123", "-w", "json"),
    ("lease", "keep-alive", "--once", "123"),
    ("lease", "list", "-w", "fields"),
    ("move-leader", "zz"),
    ("snapshot", "save"),
    ("snapshot", "save", "/nonexistent/x.db"),
    ("txn", "--bogus"),
    ("lease",),
    ("endpoint", "status", "--help"),
    ("-w", "json", "--hex", "get", "{p}a"),
    ("get", "{p}a", "-wjson"),
    ("get", "{p}a", "-w=fields"),
    ("--dial-timeout=abc", "get", "x"),
    ("get", "x", "--limit"),
    ("get", "x", "--consistency=s"),
    ("get", "x", "--consistency=q"),
    ("put", "--", "{p}dash", "-v"),
    ("get", "{p}dash", "--print-value-only", "-w", "json"),
    ("put", "{p}ign", "--ignore-value", "x"),
    ("get", "{p}", "--prefix", "--hex", "-w", "json"),
    ("del", "{p}", "--from-key", "--prefix"),
    ("del", "{p}a", "{p}z", "--prefix"),
    ("watch", "--prefix", "a", "b"),
    ("watch",),
    ("lease", "grant"),
    ("lease", "timetolive"),
    ("member", "update", "abc"),
    ("member", "update", "12", "--peer-urls="),
    ("member", "promote"),
    ("member", "add", "a", "http://x"),
    ("role", "get"),
    ("user", "add"),
    ("auth", "enable", "x"),
    ("alarm", "list", "extra"),
    ("defrag", "-w", "json"),
    ("ge", "{p}a"),
    ("endpoint", "st", "-w", "table"),
]


@pytest.mark.parametrize("args", KV_CASES, ids=lambda a: " ".join(a) or "none")
def test_same_as_etcdctl(srv: Server, args: tuple[str, ...]) -> None:
    compare(srv, *args)


TXN = 'value("{p}a") = "1"\n\nput {p}a 2\nget {p}a\n\ndel {p}a\n\n'


@pytest.mark.parametrize("fmt", ["simple", "json", "fields"])
def test_txn(srv: Server, fmt: str) -> None:
    compare(srv, "txn", "-w", fmt, stdin=TXN)
    compare(srv, "txn", "-w", fmt, stdin="bogus\n\n\n\n")
    compare(srv, "txn", "-w", fmt, stdin='value("{p}a") = "1"\n')


def test_watch_formats(srv: Server) -> None:
    """A watch from a past revision replays the events (and is cut by the test's timeout)."""
    import subprocess
    import sys

    from tests.harness.procs import clean_env

    Etcdctl(srv.endpoint).run("put", "wf/a", "1")
    rev = int(Etcdctl(srv.endpoint).run("get", "wf/a", "-w", "fields").stdout.split('"Revision" : ')[1].split()[0])
    Etcdctl(srv.endpoint).run("put", "wf/a", "2")
    Etcdctl(srv.endpoint).run("del", "wf/a")
    for args in (("--rev", str(rev), "--prev-kv"), ("--rev", str(rev), "-w", "fields"), ("--rev", str(rev), "--hex")):
        outs = []
        for argv in ([str(Etcdctl(srv.endpoint).binary)], [sys.executable, "-m", "petcd.ctl"]):
            try:
                r = subprocess.run([*argv, f"--endpoints={srv.endpoint}", "watch", "wf/a", *args], capture_output=True,
                                   env=clean_env(), timeout=4)
                o = r.stdout
            except subprocess.TimeoutExpired as exc:
                o = exc.stdout or b""
            outs.append(Normaliser.for_servers([srv]).output(o.decode(), output_format(args)))
        assert outs[0] and outs[1] == outs[0], outs


def test_unreachable_endpoint() -> None:
    for args in (("get", "x"), ("endpoint", "status"), ("endpoint", "health")):
        e = Etcdctl("127.0.0.1:1").run("--command-timeout=1s", *args)
        p = as_etcdctl(petcdctl("127.0.0.1:1", "--command-timeout=1s", *args))
        norm = Normaliser()
        strip = [ln for ln in norm.stderr(e.stderr).splitlines() if "took" not in ln]
        assert (p.rc, p.stdout) == (e.rc, e.stdout), f"{e}\n{p}"
        assert [ln for ln in norm.stderr(p.stderr).splitlines() if "took" not in ln] == strip


def test_one_endpoint_down(srv: Server) -> None:
    """A dead endpoint before a live one: the call goes to the live one, as etcdctl's balancer does."""
    for args in (("put", "two-eps", "v"), ("get", "two-eps", "--print-value-only")):
        e = Etcdctl(["127.0.0.1:1", srv.endpoint]).run(*args)
        p = petcdctl(["127.0.0.1:1", srv.endpoint], *args)
        assert (p.rc, p.stdout, p.stderr) == (e.rc, e.stdout, e.stderr) and e.rc == 0


def test_keep_alive_until_revoked(srv: Server) -> None:
    import re
    import subprocess
    import sys
    import time

    from tests.harness.procs import clean_env

    lease = re.search(r"lease ([0-9a-f]+) granted", Etcdctl(srv.endpoint).run("lease", "grant", "3").stdout)
    assert lease
    proc = subprocess.Popen([sys.executable, "-m", "petcd.ctl", f"--endpoints={srv.endpoint}", "lease", "keep-alive",
                             lease.group(1)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    time.sleep(5)  # longer than the TTL: only the keep-alives keep it
    assert "remaining" in Etcdctl(srv.endpoint).run("lease", "timetolive", lease.group(1)).stdout
    assert Etcdctl(srv.endpoint).run("lease", "revoke", lease.group(1)).rc == 0
    out, err = proc.communicate(timeout=20)
    lines = out.decode().splitlines()
    assert proc.returncode == 0, err
    assert len(lines) >= 3 and lines[0] == f"lease {lease.group(1)} keepalived with TTL(3)"
    assert lines[-1] == f"lease {lease.group(1)} expired or revoked."


def test_env_vars(srv: Server) -> None:
    env = {"ETCDCTL_ENDPOINTS": srv.endpoint, "ETCDCTL_WRITE_OUT": "json"}
    e = Etcdctl("127.0.0.1:1").run("member", "list", env=env)  # the flag wins over the variable
    p = as_etcdctl(petcdctl("127.0.0.1:1", "member", "list", env=env))
    assert (p.rc, p.stdout == e.stdout) == (e.rc, True) or p.rc == e.rc
    import subprocess
    import sys

    from tests.harness.procs import clean_env
    out = subprocess.run([sys.executable, "-m", "petcd.ctl", "member", "list"], capture_output=True,
                         env={**clean_env(), **env}, timeout=60)
    ref = subprocess.run([str(Etcdctl(srv.endpoint).binary), "member", "list"], capture_output=True,
                         env={**clean_env(), **env}, timeout=60)
    assert out.returncode == ref.returncode == 0
    assert out.stdout == ref.stdout


def test_watch(srv: Server) -> None:
    import subprocess
    import sys
    import time

    from tests.harness.procs import clean_env

    procs = []
    for argv in ([str(Etcdctl(srv.endpoint).binary)], [sys.executable, "-m", "petcd.ctl"]):
        procs.append(subprocess.Popen([*argv, f"--endpoints={srv.endpoint}", "watch", "w/", "--prefix", "-w", "json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()))
    time.sleep(2.5)
    Etcdctl(srv.endpoint).run("put", "w/a", "1")
    Etcdctl(srv.endpoint).run("del", "w/a")
    time.sleep(1.0)
    outs = []
    for p in procs:
        p.terminate()
        o, _ = p.communicate(timeout=10)
        outs.append(Normaliser.for_servers([srv]).output(o.decode(), "json"))
    assert outs[0] and outs[1] == outs[0]


@pytest.mark.parametrize("args,rc,text", [
    (("recover", "nospace", "extra"), 128, "recover nospace takes no arguments"),
    (("recover", "bogus"), 1, 'unknown command "bogus" for "petcdctl recover"'),
    (("member", "replace"), 128, "member replace needs the member's name"),
    (("member", "replace", "m1"), 128, "member peer urls not provided"),
    (("defrag", "--safe"), 128, "--safe needs --cluster"),
    (("defrag", "--cluster", "--safe", "--min-free-ratio=2"), 128, "--min-free-ratio within [0, 1]"),
    (("defrag", "--data-dir=/tmp/x"), 128, "use petcdutl"),
    (("check", "best-practices", "--config-file=/nonexistent.yaml"), 128, "cannot read --config-file"),
    (("check", "best-practices", "x"), 128, "takes no arguments"),
    (("--discovery-srv=example.com", "get", "x"), 4, "does not do DNS SRV discovery"),
])
def test_chore_bad_input(args: tuple[str, ...], rc: int, text: str) -> None:
    """Refused before anything is sent (the endpoint does not even exist): nothing can change."""
    r = petcdctl("127.0.0.1:1", "--command-timeout=1s", *args)
    assert r.rc == rc and text in r.stderr and r.stderr.startswith("Error: "), r
