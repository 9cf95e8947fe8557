"""Progress on stderr for long offline operations: shown on a terminal (a real pty here), never
in a pipe or a log file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

from petcd.backend import KEY, META, Backend
from petcd.bbolt import save_etcd_snapshot
from petcd.mvcc.revision import pack, rev_to_bytes
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from petcd.utl.progress import Progress
from tests.bbolt.etcd351 import petcdutl
from tests.harness.procs import clean_env


def _backend(path: Path, keys: int = 20000) -> None:
    with Backend(str(path), batch_limit=5000) as be:
        for i in range(keys):
            rev = i + 2
            kv = mvccpb.KeyValue(key=f"k/{i:06d}".encode(), create_revision=rev, mod_revision=rev, version=1,
                                 value=b"v" * 200)
            be.put(KEY, rev_to_bytes(pack(rev)), kv.SerializeToString(), append=True)
            be.commit_if_due()
        be.put(META, b"consistent_index", (1).to_bytes(8, "big"))
        be.force_commit()


def _run_on_pty(argv: list[str]) -> tuple[int, str]:
    """Run argv with stderr on a pseudo-terminal; its exit code and what the terminal showed."""
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                            env=clean_env())
    os.close(slave)
    return proc.wait(60), _read_all(master)


def _read_all(master: int) -> str:
    """Everything written to the terminal, once every writer has closed it."""
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as e:  # EIO: every writer closed the terminal
            if e.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out.decode(errors="replace")


def test_progress_line_on_a_terminal() -> None:
    master, slave = os.openpty()
    now = [100.0]
    with os.fdopen(slave, "w") as tty:
        p = Progress("copying", total=4_000_000, stream=tty, clock=lambda: now[0], interval=0.5)
        assert p.enabled
        p.update(1_000_000)  # too soon to draw
        now[0] = 101.0
        p.update(2_000_000, items=10)
        now[0] = 102.0
        p.update(4_000_000, items=20)
        p.finish()
    shown = _read_all(master)
    assert shown.count("copying: ") == 3  # 1 MB came too soon after the start to be drawn
    assert "\rcopying: 2.0 MB / 4.0 MB (50%), 10 keys, 2.0 MB/s, 1.0s" in shown
    assert shown.endswith("\rcopying: 4.0 MB / 4.0 MB (100%), 20 keys, 2.0 MB/s, 2.0s\r\n")  # the tty's newline


def test_progress_is_silent_off_a_terminal(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as f:
        p = Progress("copying", total=10, stream=f)
        assert not p.enabled
        p.update(10)
        p.finish()
    assert (tmp_path / "log").read_text() == ""


def test_restore_and_defrag_show_progress_on_a_terminal_only(tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    _backend(db)
    snap = tmp_path / "snap.db"
    with Backend(str(db)) as be:
        save_etcd_snapshot(be, snap)
    utl = [sys.executable, "-m", "petcd.utl.main"]
    rc, shown = _run_on_pty([*utl, "snapshot", "restore", str(snap), f"--data-dir={tmp_path / 'a'}"])
    assert rc == 0, shown
    assert "verifying sha256: " in shown and "(100%)" in shown
    assert "restoring keys: " in shown and "20001 keys" in shown  # every item counts, as in etcd's total keys
    piped = petcdutl("snapshot", "restore", str(snap), f"--data-dir={tmp_path / 'b'}")
    assert "verifying sha256" not in piped.stderr and "restoring keys" not in piped.stderr

    rc, shown = _run_on_pty([*utl, "defrag", f"--data-dir={tmp_path / 'a'}"])
    assert rc == 0, shown
    assert "defragmenting: " in shown and "/s" in shown
    piped = petcdutl("defrag", f"--data-dir={tmp_path / 'b'}")
    assert "defragmenting: " not in piped.stderr


def test_backup_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    _backend(db, keys=5000)
    snap = tmp_path / "snap.db"
    with Backend(str(db)) as be:
        save_etcd_snapshot(be, snap)
    petcdutl("snapshot", "restore", str(snap), f"--data-dir={tmp_path / 'a'}")
    utl = [sys.executable, "-m", "petcd.utl.main"]
    rc, shown = _run_on_pty([*utl, "backup", f"--data-dir={tmp_path / 'a'}", f"--backup-dir={tmp_path / 'b'}"])
    assert rc == 0, shown
    assert "copying backend: " in shown and "(100%)" in shown
    assert "writing WAL: " in shown
    piped = petcdutl("backup", f"--data-dir={tmp_path / 'a'}", f"--backup-dir={tmp_path / 'c'}")
    assert "copying backend: " not in piped.stderr and "writing WAL: " not in piped.stderr
