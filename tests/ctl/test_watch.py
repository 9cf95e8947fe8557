"""petcdctl watch -i and watch ... -- command, against etcdctl 3.5.1 on the same petcd server:
the same stdout, stderr and exit code (prefixes and revisions normalised)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

import pytest

from petcd.ctl.watch import WatchSpec, parse_command_line, parse_line
from tests.ctl.helpers import as_etcdctl, petcdctl
from tests.harness import CtlResult, Etcdctl, Server, ServerGroup
from tests.harness.procs import ETCDCTL_BIN, clean_env

_n = itertools.count()
TOOLS = (("etcdctl", [str(ETCDCTL_BIN)]), ("petcdctl", [sys.executable, "-m", "petcd.ctl"]))


def _norm(text: str, prefix: str) -> str:
    text = text.replace(prefix, "<P>/").replace("petcdctl", "etcdctl")
    return re.sub(r"progress notify: \d+", "progress notify: <REV>", text)


class _Live:
    """A running ``watch -i``: its stdout collected as it comes, so a test waits for output
    rather than for a guessed time."""

    def __init__(self, argv: list[str], ep: str, env: Mapping[str, str] | None) -> None:
        self.proc = subprocess.Popen([*argv, f"--endpoints={ep}", "watch", "-i"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**clean_env(), **(env or {})})
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def wait_for(self, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            assert time.monotonic() < deadline and self.proc.poll() is None, (needle, self.text())
            time.sleep(0.05)

    def end(self) -> tuple[int, str, str]:
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        return rc, self.text(), self.proc.stderr.read().decode(errors="replace")


def _rev(ep: str, key: str, value: str) -> int:
    r = Etcdctl(ep).run("put", key, value, "-w", "fields")
    return int(re.search(r'"Revision" : (\d+)', r.stdout).group(1))  # type: ignore[union-attr]


def _session(ep: str, argv: list[str], prefix: str, lines: list[str], puts: list[tuple[str, str]],
             progress_watchers: int = 0, env: Mapping[str, str] | None = None) -> CtlResult:
    """Feed the lines, then a sentinel watch that replays one past event: once it shows, every
    watch before it exists (each line waits for its watch, in both tools). Then the puts, waiting
    for each one's event; then (when asked) a progress request, waiting for every watch's notice."""
    sentinel = _rev(ep, prefix + "sentinel", "up")
    live = _Live(argv, ep, env)
    for ln in lines:
        live.send(ln.replace("{p}", prefix))
    if puts or progress_watchers:
        live.send(f"watch --rev={sentinel} {prefix}sentinel")
        live.wait_for(f"{prefix}sentinel\nup\n")
    for i, (k, v) in enumerate(puts):
        Etcdctl(ep).run("put", k.replace("{p}", prefix), v)
        live.wait_for(f"\n{v}\n", sum(1 for _, w in puts[: i + 1] if w == v))
    if progress_watchers:
        live.send("progress")
        live.wait_for("progress notify: ", progress_watchers + 1)  # the sentinel's watch too
    rc, out, err = live.end()
    return CtlResult(rc, _norm(out, prefix), _norm(err, prefix))


def _both(ep: str, lines: list[str], puts: list[tuple[str, str]], progress_watchers: int = 0) -> list[CtlResult]:
    results = []
    for tool, argv in TOOLS:
        prefix = f"w{next(_n)}{tool}/"
        results.append(_session(ep, argv, prefix, lines, puts, progress_watchers))
    return results


def test_interactive_session_same_as_etcdctl(petcd_server: Server) -> None:
    lines = ["watch {p}a", "", "bogus", "watch", "watch {p}a {p}b --prefix",
             'watch --prev-kv {p}b -- sh -c "echo EXEC $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"',
             "watch --prefix {p}c", "watch --rev=1 {p}old"]
    e, p = _both(petcd_server.endpoint, lines, [("{p}a", "1"), ("{p}b", "2"), ("{p}b", "3"), ("{p}c/x", "4")], 4)
    assert e.rc == 3 and "PUT\n<P>/a\n1\n" in e.stdout and "progress notify: <REV>" in e.stdout, e
    assert p == e, f"etcdctl:\n{e}\npetcdctl:\n{p}"


@pytest.mark.parametrize("line", ["watch --prefix", "watch --bogus k", "watch k --", "watch -h k"])
def test_interactive_bad_line_ends_as_in_etcdctl(petcd_server: Server, line: str) -> None:
    e, p = _both(petcd_server.endpoint, [line], [])
    assert e.rc == 128 and p == e, f"etcdctl:\n{e}\npetcdctl:\n{p}"


def test_interactive_with_the_watch_key_variable(petcd_server: Server) -> None:
    ep = petcd_server.endpoint
    for tool, argv in TOOLS:
        prefix = f"w{next(_n)}{tool}/"
        rev = _rev(ep, prefix + "k", "v")
        live = _Live(argv, ep, {"ETCDCTL_WATCH_KEY": prefix + "k"})
        live.send(f"watch --rev={rev}")  # the variable gives the key
        live.wait_for(f"{prefix}k\nv\n")
        assert live.end() == (3, f"PUT\n{prefix}k\nv\n", "Error: error reading watch request line: EOF\n"), tool
        live = _Live(argv, ep, {"ETCDCTL_WATCH_KEY": prefix + "k"})
        live.send("watch other")
        assert live.end() == (128, "", "Error: bad number of arguments (found conflicting environment key)\n"), tool


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


def _watch_proc(argv: list[str], ep: str, key: str, rev: int, *command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*argv, f"--endpoints={ep}", "watch", key, f"--rev={rev}", "--", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())


def test_exec_form_same_as_etcdctl(petcd_server: Server) -> None:
    """The command runs per event with etcdctl's variables; a failing command ends with exit 1
    (the watches replay past events, so nothing depends on when a watch is created)."""
    ep = petcd_server.endpoint
    results = []
    for tool, argv in TOOLS:
        prefix = f"x{next(_n)}{tool}/"
        revs = [_rev(ep, prefix + k, v) for k, v in (("k", 'a "q"'), ("k", "2"), ("f", "x"), ("n", "y"))]
        show = 'echo "EXEC $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"'
        procs = [_watch_proc(argv, ep, prefix + "k", revs[0], "sh", "-c", show + '; [ "$ETCD_WATCH_VALUE" != \'"2"\' ]'),
                 _watch_proc(argv, ep, prefix + "f", revs[2], "false"),
                 _watch_proc(argv, ep, prefix + "n", revs[3], "no-such-command-here")]
        outs = []
        for proc in procs:
            o, e = proc.communicate(timeout=60)
            text = _norm(o.decode(), prefix)
            for i, r in enumerate(revs):
                text = text.replace(f" {r}\n", f" <R{i}>\n")
            outs.append((proc.returncode, text, _norm(e.decode(), prefix)))
        results.append(outs)
    e, p = results
    # one answer replays both events: both are printed, then the command runs for each, with the
    # answer's header revision (the current one), as etcdctl does
    assert e[0][1] == 'PUT\n<P>/k\na "q"\nPUT\n<P>/k\n2\nEXEC "PUT" "<P>/k" "a \\"q\\"" <R3>\nEXEC "PUT" "<P>/k" "2" <R3>\n'
    assert e[1] == (1, "PUT\n<P>/f\nx\n", 'command ["false"] error (exit status 1)\n')
    assert p == e, f"etcdctl:\n{e}\npetcdctl:\n{p}"


def test_single_quoted_words_cut_as_etcdctl_cuts_them(petcd_server: Server) -> None:
    """etcdctl slices a single-quoted word by the number of words on its line (txn and watch -i
    lines): 'xyz' on a three-word line becomes "x"; a slice past the word's end panics (exit 2)."""
    ep = petcd_server.endpoint
    for tool, argv in TOOLS:
        key = f"q{next(_n)}{tool}"
        r = subprocess.run([*argv, f"--endpoints={ep}", "txn"], input=f"\nput {key} 'xyz'\n\n\n".encode(),
                           capture_output=True, env=clean_env(), timeout=30)
        assert (r.returncode, r.stdout) == (0, b"SUCCESS\n\nOK\n"), (tool, r)
        assert Etcdctl(ep).run("get", key, "--print-value-only").stdout == "x\n", tool
        r = subprocess.run([*argv, f"--endpoints={ep}", "txn"], input=f"\nput {key} 'a' b c d e\n\n\n".encode(),
                           capture_output=True, env=clean_env(), timeout=30)
        first = r.stderr.decode().splitlines()[0]
        assert (r.returncode, first) == (2, "panic: runtime error: slice bounds out of range [:6] with length 3"), \
            (tool, r)


def test_watch_ends_when_its_member_loses_the_leader(servers: ServerGroup) -> None:
    """etcdctl's watches require a leader: when the member is cut off from the others, both tools
    say so and end with etcdctl's exit code 5."""
    m1, m2, m3 = servers.start_cluster("petcd", 3, extra_args=["--heartbeat-interval=50", "--election-timeout=500"])
    procs = {tool: subprocess.Popen([*argv, f"--endpoints={m1.endpoint}", "watch", "lost/k"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=clean_env()) for tool, argv in TOOLS}
    time.sleep(2.0)  # both watches set up
    m2.stop()
    m3.stop()
    got = {}
    try:
        for tool, proc in procs.items():
            out, err = proc.communicate(timeout=40)
            got[tool] = (proc.returncode, out.decode(), err.decode().replace("petcdctl", "etcdctl"))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert got["etcdctl"] == (5, "", "watch was canceled (etcdserver: no leader)\n"
                                     "Error: watch is canceled by the server\n"), got
    assert got["petcdctl"] == got["etcdctl"]
