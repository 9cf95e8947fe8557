"""``etcdctl lock`` and ``etcdctl elect`` (3.5.1) against real etcd 3.5.1 and petcd.

etcdctl builds these on clientv3/concurrency over KV, Watch and Lease (not on the Lock and Election
RPCs), so these tests check that petcd gives that client what etcd gives it: mutual exclusion,
the lock's key and revision in the environment of the command it runs, leadership handed over
when a candidate stops, and observers told of each leader.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

import pytest

from tests.concurrency.conftest import ETCDCTL351
from tests.concurrency.recording import Client
from tests.harness import Server
from tests.harness.procs import clean_env

WAIT = 20.0
_SESSION_KEY = re.compile(r"/([0-9a-f]{6,16})\b")


class Ctl:
    """One etcdctl process; its stdout lines collected on a thread."""

    def __init__(self, server: Server, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(ETCDCTL351), f"--endpoints={server.endpoint}", *args],
            env={**clean_env(), "ETCDCTL_API": "3"},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, count: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(self.lines) < count:
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self._reader.is_alive()):
                raise AssertionError(f"etcdctl printed {self.lines}, expected {count} lines; {self.stderr()}")
            time.sleep(0.02)

    def stop(self) -> int:
        """SIGTERM (etcdctl unlocks or resigns on it), then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        try:
            rc = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(5)
        return rc

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr is not None and self.proc.poll() is not None else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Transcript:
    """Lines of what happened, with session keys' lease ids as L1, L2... and revisions relative."""

    def __init__(self, client: Client) -> None:
        self.base = client.revision()
        self.leases: dict[str, str] = {}
        self.lines: list[str] = []

    def add(self, what: str, lines: Sequence[str] | str) -> None:
        text = " | ".join([lines] if isinstance(lines, str) else lines)
        text = _SESSION_KEY.sub(lambda m: "/" + self.leases.setdefault(m.group(1), f"L{len(self.leases) + 1}"), text)
        self.lines.append(f"{what}: {text}")

    def rev(self, value: str) -> str:
        return f"R{int(value) - self.base:+d}"


def lock_command(server: Server) -> list[str]:
    client = Client(server)
    t = Transcript(client)
    try:
        run = subprocess.run(
            [str(ETCDCTL351), f"--endpoints={server.endpoint}", "lock", "ctl-cmd", "--",
             "sh", "-c", 'echo "$ETCD_LOCK_KEY" "$ETCD_LOCK_REV"'],
            env={**clean_env(), "ETCDCTL_API": "3"}, capture_output=True, text=True, timeout=WAIT,
        )
        key, rev = run.stdout.split()
        t.add(f"rc={run.returncode}", [key, t.rev(rev)])
        t.add("keys after", [k.decode() for k in client.keys(b"ctl-cmd/")])
        return t.lines
    finally:
        client.close()


def lock_contenders(server: Server) -> list[str]:
    client = Client(server)
    t = Transcript(client)
    first = Ctl(server, "lock", "ctl-two")
    second: Ctl | None = None
    try:
        first.wait_lines(1)
        t.add("first holds", first.lines)
        second = Ctl(server, "lock", "ctl-two", "--", "sh", "-c", 'echo "got $ETCD_LOCK_KEY"')
        client.wait_keys(b"ctl-two/", 2)
        time.sleep(0.5)
        t.add("second waits", f"running={second.proc.poll() is None} printed={second.lines}")
        t.add(f"first stops rc={first.stop()}", [])
        t.add(f"second ran rc={second.wait()}", second.lines)
        client.wait_keys(b"ctl-two/", 0)
        return t.lines
    finally:
        first.kill()
        if second is not None:
            second.kill()
        client.close()


def elect(server: Server) -> list[str]:
    client = Client(server)
    t = Transcript(client)
    procs: list[Ctl] = []
    try:
        observer = Ctl(server, "elect", "-l", "ctl-el")
        procs.append(observer)
        time.sleep(0.3)  # the observer is watching
        a = Ctl(server, "elect", "ctl-el", "alpha")
        procs.append(a)
        a.wait_lines(2)
        t.add("A elected", a.lines)
        observer.wait_lines(2)
        b = Ctl(server, "elect", "ctl-el", "beta")
        procs.append(b)
        client.wait_keys(b"ctl-el/", 2)
        time.sleep(0.5)
        t.add("B waits", f"printed={b.lines}")
        t.add(f"A stops rc={a.stop()}", [])
        b.wait_lines(2)
        t.add("B elected", b.lines)
        observer.wait_lines(4)
        t.add(f"B stops rc={b.stop()}", [])
        client.wait_keys(b"ctl-el/", 0)
        time.sleep(0.3)
        t.add(f"observer stops rc={observer.stop()}", observer.lines)
        return t.lines
    finally:
        for p in procs:
            p.kill()
        client.close()


CASES = {f.__name__: f for f in (lock_command, lock_contenders, elect)}
_expected: dict[str, list[str]] = {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_etcdctl_same_as_etcd(name: str, etcd351: Server, petcd: Server) -> None:
    if name not in _expected:
        _expected[name] = CASES[name](etcd351)
    got = CASES[name](petcd)
    assert got == _expected[name], f"petcd ({petcd.label}):\n" + "\n".join(got) + "\netcd 3.5.1:\n" + "\n".join(
        _expected[name])
