"""Operator-facing behaviour on real processes: NOSPACE and its recovery, the data-dir lock,
clean shutdown. The NOSPACE sequence runs against real etcd too and the texts must match."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.harness import Server, ServerGroup
from tests.harness.ctl import Etcdctl

QUOTA = 4 * 1024 * 1024  # small, so a few MiB of writes fill it
NOSPACE = "etcdserver: mvcc: database space exceeded"


def _fill_until_nospace(ctl: Etcdctl) -> str:
    value = "x" * 100_000
    for i in range(400):
        r = ctl.run("put", f"fill/{i % 20}", value)
        if r.rc != 0:
            return r.stderr
    pytest.fail("the quota was never hit")


@pytest.mark.parametrize("kind", ["etcd", "petcd"])
def test_nospace_alarm_and_recovery(kind: str, servers: ServerGroup) -> None:
    server = servers.start(kind, extra_args=(f"--quota-backend-bytes={QUOTA}",))  # type: ignore[arg-type]
    ctl = Etcdctl.for_server(server)
    err = _fill_until_nospace(ctl)
    assert f"Error: {NOSPACE}" in err
    ids = server.ids()
    alarms = ctl.run("alarm", "list")
    assert alarms.rc == 0
    assert alarms.stdout == f"memberID:{ids.member_id} alarm:NOSPACE \n"
    # writes stay refused while the alarm is up, even small ones; reads and deletes go on
    small = ctl.run("put", "small", "v")
    assert small.rc != 0 and NOSPACE in small.stderr
    assert ctl.run("get", "fill/0", "--print-value-only").rc == 0
    status = ctl.run("endpoint", "status", "-w", "json")
    assert "alarm:NOSPACE" in status.stdout
    # the notebook's recovery: compact, defrag, disarm
    rev = int(ctl.run("get", "fill/0", "-w", "json").stdout.split('"revision":')[1].split(",")[0])
    assert ctl.run("compact", str(rev)).rc == 0
    defrag = ctl.run("defrag")
    assert defrag.rc == 0 and defrag.stdout.startswith("Finished defragmenting etcd member[")
    disarm = ctl.run("alarm", "disarm")
    assert disarm.rc == 0
    assert disarm.stdout == f"memberID:{ids.member_id} alarm:NOSPACE \n"
    assert ctl.run("alarm", "list").stdout == ""
    ok = ctl.run("put", "small", "v")
    assert ok.rc == 0, ok


def test_data_dir_is_locked_against_a_second_process(servers: ServerGroup, tmp_path: object) -> None:
    first = servers.start("petcd")
    second = Server("petcd", first.workdir, name=first.name)  # same data dir, new ports
    proc = subprocess.run(second.command(), capture_output=True, text=True, timeout=30, cwd=first.workdir)
    assert proc.returncode != 0
    assert "locked" in proc.stderr, proc.stderr
    # the first member is unharmed
    assert Etcdctl.for_server(first).run("put", "k", "v").rc == 0


def test_sigterm_shuts_down_cleanly(servers: ServerGroup) -> None:
    server = servers.start("petcd")
    assert Etcdctl.for_server(server).run("put", "k", "v").rc == 0
    proc = server._proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    server.restart()
    assert Etcdctl.for_server(server).run("get", "k", "--print-value-only").stdout == "v\n"


def test_bad_flag_is_refused_before_anything_is_written(tmp_path: object) -> None:
    import pathlib

    d = pathlib.Path(str(tmp_path)) / "d"
    proc = subprocess.run(
        [sys.executable, "-m", "petcd", "--data-dir", str(d), "--no-such-flag"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "flag provided but not defined: -no-such-flag" in proc.stderr
    assert not d.exists()
