"""`etcdctl watch` against real etcd and the server under test: the same history, the same
commands, the same output (revisions relative to the scenario's start, ids normalised)."""

from __future__ import annotations

import subprocess
import threading
import time

from tests.harness import ETCDCTL_BIN, Normaliser, Server
from tests.harness.procs import clean_env

DEADLINE = 20.0


def ctl(server: Server, *args: str) -> str:
    out = subprocess.run(
        [str(ETCDCTL_BIN), f"--endpoints={server.endpoint}", *args],
        env={**clean_env(), "ETCDCTL_API": "3"},
        capture_output=True,
        timeout=30,
        check=True,
    )
    return out.stdout.decode()


def watch(server: Server, args: list[str], until: str, trigger: list[str] | None = None, stdin: str = "") -> str:
    """Run `etcdctl watch args` until a line holding `until` is printed (after running the
    `trigger` command, if any, once the watch is up) or the process ends; its output."""
    proc = subprocess.Popen(
        [str(ETCDCTL_BIN), f"--endpoints={server.endpoint}", "watch", *args],
        env={**clean_env(), "ETCDCTL_API": "3"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    if stdin:
        proc.stdin.write(stdin.encode())
        proc.stdin.flush()
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode().rstrip("\n")
            lines.append(line)
            if until in line:
                break
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if trigger:
        time.sleep(0.5)  # let the watch be created first; its history part does not depend on it
        ctl(server, *trigger)
    done.wait(DEADLINE)
    proc.kill()
    proc.wait()
    reader.join(5)
    return "\n".join(lines)


def scenario(server: Server) -> list[str]:
    base = int(ctl(server, "put", "marker", "x", "-w", "fields").split('"Revision" : ')[1].split()[0])
    for cmd in (
        ["put", "w/a", "1"],
        ["put", "w/b", "2"],
        ["put", "w/a", "3"],
        ["del", "w/b"],
        ["put", "w/c", "4"],
    ):
        ctl(server, *cmd)
    r1 = str(base + 1)
    outs = [
        watch(server, [f"--rev={r1}", "--prefix", "w/"], "END1", ["put", "w/zz", "END1"]),
        watch(server, [f"--rev={r1}", "--prefix", "--prev-kv", "w/"], "END2", ["put", "w/zz", "END2"]),
        watch(server, [f"--rev={r1}", "w/a", "-w", "json"], "RU5EMw==", ["put", "w/a", "END3"]),  # base64
        watch(server, [f"--rev={r1}", "w/a", "w/c"], "END4", ["put", "w/b", "END4"]),
        watch(server, ["-i"], "END5", ["put", "w/a", "END5"], stdin=f"watch --rev={r1} --prefix w/\n"),
        watch(server, ["-i"], "END6", ["put", "w/c", "END6"], stdin="watch w/c --prev-kv\n"),
    ]
    ctl(server, "compact", str(base + 3))
    outs.append(watch(server, [f"--rev={r1}", "--prefix", "w/"], "never"))
    norm = Normaliser.for_servers([server], base_revision=base)
    return [norm.json_output(o) if i == 2 else norm.simple_output(o) for i, o in enumerate(outs)]


def test_etcdctl_watch_same_output(both: tuple[Server, Server]) -> None:
    etcd, petcd = both
    want = scenario(etcd)
    got = scenario(petcd)
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        assert g == w, f"case {i}:\n--- etcd ---\n{w}\n--- petcd ---\n{g}"
    assert "PUT" in want[0] and "compacted" in want[-1]
