"""petcdctl watch -i and watch ... -- command, against etcdctl 3.5.1 on the same petcd server:
the same stdout, stderr and exit code (prefixes and revisions normalised)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections.abc import Mapping

import pytest

from petcd.ctl.watch import WatchSpec, parse_command_line, parse_line
from tests.ctl.helpers import as_etcdctl, petcdctl
from tests.harness import CtlResult, Etcdctl, Server
from tests.harness.procs import ETCDCTL_BIN, clean_env

_n = itertools.count()
TOOLS = (("etcdctl", [str(ETCDCTL_BIN)]), ("petcdctl", [sys.executable, "-m", "petcd.ctl"]))


def _norm(text: str, prefix: str) -> str:
    text = text.replace(prefix, "<P>/").replace("petcdctl", "etcdctl")
    return re.sub(r"progress notify: \d+", "progress notify: <REV>", text)


def _session(ep: str, argv: list[str], prefix: str, lines: list[str], puts: list[tuple[str, str]],
             after: list[str], env: Mapping[str, str] | None = None) -> CtlResult:
    """Feed lines, make the puts, feed the after-lines, then end stdin; the output normalised."""
    proc = subprocess.Popen([*argv, f"--endpoints={ep}", "watch", "-i"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**clean_env(), **(env or {})})
    assert proc.stdin is not None
    for ln in lines:
        proc.stdin.write((ln.replace("{p}", prefix) + "\n").encode())
        proc.stdin.flush()
    if puts or after:
        time.sleep(1.5)  # the watches are created before the writes
    for k, v in puts:
        Etcdctl(ep).run("put", k.replace("{p}", prefix), v)
    if puts:
        time.sleep(0.5)
    for ln in after:
        proc.stdin.write((ln + "\n").encode())
        proc.stdin.flush()
        time.sleep(0.3)
    out, err = proc.communicate(timeout=20)
    return CtlResult(proc.returncode, _norm(out.decode(), prefix), _norm(err.decode(), prefix))


def _both(ep: str, lines: list[str], puts: list[tuple[str, str]], after: list[str] = (),  # type: ignore[assignment]
          env: Mapping[str, str] | None = None) -> list[CtlResult]:
    results = []
    for tool, argv in TOOLS:
        prefix = f"w{next(_n)}{tool}/"
        results.append(_session(ep, argv, prefix, lines, puts, list(after), env))
    return results


def test_interactive_session_same_as_etcdctl(petcd_server: Server) -> None:
    lines = ["watch {p}a", "", "bogus", "watch", "watch {p}a {p}b --prefix",
             'watch --prev-kv {p}b -- sh -c "echo EXEC $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"',
             "watch --prefix {p}c", "watch --rev=1 {p}old"]
    e, p = _both(petcd_server.endpoint, lines, [("{p}a", "1"), ("{p}b", "2"), ("{p}b", "3"), ("{p}c/x", "4")],
                 ["progress"])
    assert e.rc == 3 and "PUT\n<P>/a\n1\n" in e.stdout and "progress notify: <REV>" in e.stdout, e
    assert p == e, f"etcdctl:\n{e}\npetcdctl:\n{p}"


@pytest.mark.parametrize("line", ["watch --prefix", "watch --bogus k", "watch k --", "watch -h k"])
def test_interactive_bad_line_ends_as_in_etcdctl(petcd_server: Server, line: str) -> None:
    e, p = _both(petcd_server.endpoint, [line], [])
    assert e.rc == 128 and p == e, f"etcdctl:\n{e}\npetcdctl:\n{p}"


def test_interactive_with_the_watch_key_variable(petcd_server: Server) -> None:
    for tool, argv in TOOLS:
        prefix = f"w{next(_n)}{tool}/"
        env = {"ETCDCTL_WATCH_KEY": prefix + "k"}
        ok = _session(petcd_server.endpoint, argv, prefix, ["watch"], [("{p}k", "v")], [], env)
        assert (ok.rc, ok.stdout) == (3, "PUT\n<P>/k\nv\n"), (tool, ok)
        bad = _session(petcd_server.endpoint, argv, prefix, ["watch other"], [], [], env)
        assert (bad.rc, bad.stderr) == (128, "Error: bad number of arguments (found conflicting environment key)\n")


@pytest.mark.parametrize("args,env", [
    (("watch", "k", "--"), {}),
    (("watch", "--", "echo", "hi"), {}),
    (("watch", "--prefix", "a", "b", "--", "echo"), {}),
    (("watch", "other"), {"ETCDCTL_WATCH_KEY": "k"}),
    (("watch", "other", "--", "echo", "1"), {"ETCDCTL_WATCH_KEY": "k"}),
    (("watch",), {"ETCDCTL_WATCH_RANGE_END": "z"}),
])
def test_command_line_refusals_same_as_etcdctl(args: tuple[str, ...], env: dict[str, str]) -> None:
    e = Etcdctl("127.0.0.1:1").run(*args, env=env)
    p = as_etcdctl(petcdctl("127.0.0.1:1", *args, env=env))
    assert e.rc == 128 and (p.rc, p.stdout, p.stderr) == (e.rc, e.stdout, e.stderr), f"{e}\n{p}"


def test_parse_matches_etcdctls_rules() -> None:
    values = {"prefix": False, "rev": 0, "prev-kv": False, "progress-notify": False}
    spec = parse_command_line(["etcdctl", "watch", "foo", "--rev", "1", "bar", "--", "echo", "bar"],
                              ["foo", "bar", "echo", "bar"], "", "", values)
    assert (spec.args, spec.exec_args) == (["foo", "bar"], ["echo", "bar"])  # the last "bar" is the command's
    spec = parse_command_line(["etcdctl", "watch", "--", "echo", "hi"], ["echo", "hi"], "k", "z", values)
    assert (spec.args, spec.exec_args) == (["k", "z"], ["echo", "hi"])
    line = parse_line(["watch", "--prev-kv", "--rev=3", "a", "--", "sh", "-c", "x"], "", "")
    assert line == WatchSpec(["a"], False, 3, True, False, ["sh", "-c", "x"])


def _watch_proc(argv: list[str], ep: str, key: str, *command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*argv, f"--endpoints={ep}", "watch", key, "--", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())


def test_exec_form_same_as_etcdctl(petcd_server: Server) -> None:
    """The command runs per event with etcdctl's variables; a failing command ends with exit 1."""
    ep = petcd_server.endpoint
    results = []
    for tool, argv in TOOLS:
        prefix = f"x{next(_n)}{tool}/"
        procs = [_watch_proc(argv, ep, prefix + "k", "sh", "-c",
                             'echo "EXEC $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"'),
                 _watch_proc(argv, ep, prefix + "f", "false"),
                 _watch_proc(argv, ep, prefix + "n", "no-such-command-here")]
        time.sleep(1.5)
        revs = []
        for key, value in (("k", 'a "q"'), ("k", "2"), ("f", "x"), ("n", "y")):
            r = Etcdctl(ep).run("put", prefix + key, value, "-w", "fields")
            revs.append(re.search(r'"Revision" : (\d+)', r.stdout).group(1))  # type: ignore[union-attr]
        time.sleep(1.0)
        procs[0].terminate()
        outs = []
        for proc in procs:
            o, e = proc.communicate(timeout=20)
            outs.append((proc.returncode if proc is not procs[0] else None, _norm(o.decode(), prefix),
                         _norm(e.decode(), prefix)))
        first = outs[0][1]
        assert first.count("EXEC") == 2 and f"{revs[0]}\n" in first and f"{revs[1]}\n" in first, (tool, first)
        outs[0] = (None, first.replace(revs[0], "<R1>").replace(revs[1], "<R2>"), outs[0][2])
        results.append(outs)
    e, p = results
    assert e[0][1] == 'PUT\n<P>/k\na "q"\nEXEC "PUT" "<P>/k" "a \\"q\\"" <R1>\nPUT\n<P>/k\n2\nEXEC "PUT" "<P>/k" "2" <R2>\n'
    assert e[1] == (1, "PUT\n<P>/f\nx\n", 'command ["false"] error (exit status 1)\n')
    assert p == e, f"etcdctl:\n{e}\npetcdctl:\n{p}"
