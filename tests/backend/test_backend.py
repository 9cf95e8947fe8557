"""Backend: buckets, batch visibility and commit policy, defrag, snapshots, sizes, map growth."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import lmdb
import pytest

from petcd.backend import (
    ALL_BUCKETS,
    CONSISTENT_INDEX_KEY,
    KEY,
    LEASE,
    MEMBERS,
    META,
    Backend,
    BackendError,
    BackendFullError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "member" / "snap" / "db")


def in_thread(fn: object) -> object:
    out: list[object] = []

    def run() -> None:
        out.append(fn())  # type: ignore[operator]

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert not t.is_alive()
    return out[0]


def test_buckets_put_get_delete_range(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        assert os.path.isfile(be.path)
        for i, b in enumerate(ALL_BUCKETS):
            be.put(b, b"k", b"v%d" % i)
        for i, b in enumerate(ALL_BUCKETS):
            assert be.get(b, b"k") == b"v%d" % i
        for k in (b"a", b"b", b"c", b"d"):
            be.put(LEASE, k, k.upper())
        assert be.range(LEASE, b"b", b"d") == [(b"b", b"B"), (b"c", b"C")]
        assert be.range(LEASE, b"b") == [(b"b", b"B"), (b"c", b"C"), (b"d", b"D"), (b"k", b"v2")]
        assert be.range(LEASE, b"", None, limit=2) == [(b"a", b"A"), (b"b", b"B")]
        assert be.range(LEASE, b"zz") == []
        assert be.delete(LEASE, b"a") is True
        assert be.delete(LEASE, b"a") is False
        assert be.get(LEASE, b"a") is None
        with be.read() as tx:
            assert tx.keys(LEASE, b"", b"d") == [b"b", b"c"]
            assert tx.count(LEASE) == 4
        assert be.get_many(LEASE, [b"c", b"a", b"b"]) == [b"C", None, b"B"]
        be.force_commit()
        assert be.get_many(LEASE, [b"c", b"a", b"b"]) == [b"C", None, b"B"]  # through a read txn
        assert in_thread(lambda: be.get_many(LEASE, [b"d"])) == [b"D"]
    with Backend(db_path(tmp_path)) as be:
        assert be.get(MEMBERS, b"k") == b"v6"
        assert be.get(LEASE, b"a") is None


def test_append_mode_falls_back_for_a_key_that_does_not_grow(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        be.put(KEY, b"b", b"1", append=True)
        be.put(KEY, b"c", b"2", append=True)
        be.put(KEY, b"a", b"3", append=True)
        be.put(KEY, b"b", b"4", append=True)
        assert be.range(KEY) == [(b"a", b"3"), (b"b", b"4"), (b"c", b"2")]


def test_owner_sees_pending_writes_other_threads_see_committed(tmp_path: Path) -> None:
    clock = FakeClock()
    with Backend(db_path(tmp_path), batch_interval=0.1, batch_limit=1000, clock=clock) as be:
        be.put(META, b"x", b"1")
        assert be.get(META, b"x") == b"1"
        assert be.pending == 1
        assert in_thread(lambda: be.get(META, b"x")) is None
        # Not due yet: neither the interval nor the limit is reached.
        assert be.commit_if_due() is False
        clock.now = 0.05
        assert be.commit_if_due() is False
        clock.now = 0.1
        assert be.commit_if_due() is True
        assert be.pending == 0
        assert in_thread(lambda: be.get(META, b"x")) == b"1"
        assert be.commit_if_due() is False  # nothing open


def test_commit_after_batch_limit_writes(tmp_path: Path) -> None:
    clock = FakeClock()
    with Backend(db_path(tmp_path), batch_limit=5, clock=clock) as be:
        for i in range(4):
            be.put(KEY, b"%d" % i, b"v")
        assert be.commit_if_due() is False
        be.put(KEY, b"4", b"v")
        assert be.commit_if_due() is True
        assert len(in_thread(lambda: be.range(KEY))) == 5  # type: ignore[arg-type]


def test_writes_never_commit_by_themselves(tmp_path: Path) -> None:
    clock = FakeClock()
    with Backend(db_path(tmp_path), batch_limit=2, clock=clock) as be:
        commits = be.commits
        clock.now = 100.0
        for i in range(10):
            be.put(KEY, b"%d" % i, b"v")
        assert be.commits == commits
        assert in_thread(lambda: be.get(KEY, b"0")) is None
        be.force_commit()
        assert be.commits == commits + 1
        assert in_thread(lambda: be.get(KEY, b"9")) == b"v"


def test_batch_belongs_to_its_thread(tmp_path: Path) -> None:
    be = Backend(db_path(tmp_path))
    be.put(KEY, b"a", b"1")

    def write() -> object:
        try:
            be.put(KEY, b"b", b"2")
        except BackendError as e:
            return e
        return None

    assert isinstance(in_thread(write), BackendError)
    assert in_thread(be.commit_if_due) is False
    assert isinstance(in_thread(lambda: _close_error(be)), BackendError)
    be.close()


def _close_error(be: Backend) -> object:
    try:
        be.close()
    except BackendError as e:
        return e
    return None


def test_force_commit_from_another_thread_waits_for_the_owner(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        be.put(KEY, b"a", b"1")
        done = threading.Event()

        def other() -> None:
            be.force_commit()
            done.set()

        t = threading.Thread(target=other)
        t.start()
        assert not done.wait(0.05)
        deadline = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < deadline:
            be.commit_if_due()  # the request makes it due
            time.sleep(0.001)
        t.join(10)
        assert done.is_set()
        assert in_thread(lambda: be.get(KEY, b"a")) == b"1"


def test_commit_hook_writes_in_the_same_commit(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        calls: list[int] = []

        def hook() -> None:
            calls.append(1)
            be.put(META, b"hooked", b"%d" % len(calls))

        be.add_commit_hook(hook)
        be.put(KEY, b"a", b"1")
        be.force_commit()
        assert calls == [1]
        assert in_thread(lambda: be.get(META, b"hooked")) == b"1"
        be.force_commit()  # nothing open: no hook, no commit
        assert calls == [1]


def _fill(be: Backend, n: int, size: int = 512) -> None:
    for i in range(n):
        be.put(KEY, b"%08d" % i, bytes([i % 251]) * size, append=True)
    be.force_commit()


def test_defrag_shrinks_the_file_and_keeps_the_data(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        _fill(be, 4000)
        for i in range(4000):
            if i % 10:
                be.delete(KEY, b"%08d" % i)
        be.put(META, b"m", b"meta")
        be.force_commit()
        before = be.size()
        in_use = be.size_in_use()
        assert in_use < before
        be.defrag()
        after = be.size()
        assert after < before / 2
        assert after >= be.size_in_use()
        rows = be.range(KEY)
        assert [k for k, _ in rows] == [b"%08d" % i for i in range(0, 4000, 10)]
        assert all(v == bytes([int(k) % 251]) * 512 for k, v in rows)
        assert be.get(META, b"m") == b"meta"
        be.put(KEY, b"z", b"after")
        be.force_commit()
    with Backend(db_path(tmp_path)) as be:
        assert be.get(KEY, b"z") == b"after"
        assert len(be.range(KEY)) == 401


def test_defrag_on_another_thread_commits_the_owners_batch_first(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        _fill(be, 500)
        be.put(KEY, b"pending", b"1")
        t = threading.Thread(target=be.defrag)
        t.start()
        deadline = time.monotonic() + 10
        while not be.write_blocked and time.monotonic() < deadline:
            time.sleep(0.001)
        assert be.write_blocked
        while t.is_alive() and time.monotonic() < deadline:
            be.commit_if_due()
            time.sleep(0.001)
        t.join(10)
        assert not t.is_alive()
        assert not be.write_blocked
        assert in_thread(lambda: be.get(KEY, b"pending")) == b"1"
        be.put(KEY, b"after", b"2")
        assert be.get(KEY, b"after") == b"2"


def test_reads_continue_during_defrag(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        _fill(be, 3000)
        errors: list[BaseException] = []
        stop = threading.Event()
        reads = [0]

        def reader() -> None:
            try:
                while not stop.is_set():
                    assert be.get(KEY, b"%08d" % 7) == bytes([7]) * 512
                    reads[0] += 1
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=reader)
        t.start()
        for _ in range(3):
            be.defrag()
        stop.set()
        t.join(10)
        assert not errors
        assert reads[0] > 0


def test_snapshot_to_path_and_fileobj(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        _fill(be, 200)
        be.put(LEASE, b"l", b"lease")
        be.force_commit()
        be.put(KEY, b"pending", b"not in the snapshot")
        snap = str(tmp_path / "snap.db")
        n = be.snapshot_to(snap)
        assert n == os.path.getsize(snap)
        buf = io.BytesIO()
        m = be.snapshot_to(buf)
        assert m == len(buf.getvalue())
        assert not [p for p in os.listdir(os.path.dirname(be.path)) if ".snap." in p]
    copy2 = tmp_path / "snap2.db"
    copy2.write_bytes(buf.getvalue())
    for path in (snap, str(copy2)):
        with Backend(path) as restored:
            assert len(restored.range(KEY)) == 200
            assert restored.get(LEASE, b"l") == b"lease"
            assert restored.get(KEY, b"pending") is None


def test_sizes(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        empty_in_use = be.size_in_use()
        assert be.size() == os.path.getsize(be.path)
        _fill(be, 2000)
        full = be.size_in_use()
        assert full > empty_in_use + 2000 * 512
        assert be.size() >= full
        for i in range(2000):
            be.delete(KEY, b"%08d" % i)
        be.force_commit()
        assert be.size_in_use() < full / 4
        assert be.size() == os.path.getsize(be.path)


def test_map_grows_and_keeps_the_pending_batch(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path), map_size=1 << 16, max_map_size=1 << 26) as be:
        be.put(META, b"first", b"1")
        for i in range(2000):
            be.put(KEY, b"%08d" % i, b"x" * 1000, append=True)
        assert be.map_size > 1 << 16
        assert be.get(META, b"first") == b"1"
        be.force_commit()
        assert len(be.range(KEY)) == 2000


def test_map_limit_refuses_the_write_that_hits_it(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path), map_size=1 << 16, max_map_size=1 << 18) as be:
        written = 0
        with pytest.raises(BackendFullError):
            for i in range(10000):
                be.put(KEY, b"%08d" % i, b"x" * 1000, append=True)
                written += 1
        be.force_commit()
        assert len(be.range(KEY)) == written


def test_hash_covers_content_not_history(tmp_path: Path) -> None:
    with Backend(str(tmp_path / "a.db")) as a, Backend(str(tmp_path / "b.db")) as b:
        for k in (b"1", b"2", b"3"):
            a.put(KEY, k, k * 3)
        for k in (b"3", b"1", b"9", b"2"):
            b.put(KEY, k, k * 3)
        b.delete(KEY, b"9")
        a.put(META, CONSISTENT_INDEX_KEY, b"\x00" * 7 + b"\x05")
        b.put(META, CONSISTENT_INDEX_KEY, b"\x00" * 7 + b"\x09")
        a.force_commit()
        b.force_commit()
        assert a.hash() == b.hash()
        b.put(KEY, b"1", b"changed")
        assert a.hash() == b.hash()  # pending writes are not hashed
        b.force_commit()
        assert a.hash() != b.hash()


def test_closed_backend_refuses_work(tmp_path: Path) -> None:
    be = Backend(db_path(tmp_path))
    be.close()
    be.close()
    with pytest.raises(BackendError):
        be.get(KEY, b"a")
    with pytest.raises(BackendError):
        be.put(KEY, b"a", b"1")


def test_file_is_a_plain_lmdb_file(tmp_path: Path) -> None:
    with Backend(db_path(tmp_path)) as be:
        be.put(MEMBERS, b"m1", b"x")
        be.force_commit()
        path = be.path
    env = lmdb.open(path, subdir=False, readonly=True, max_dbs=20)
    try:
        db = env.open_db(MEMBERS, create=False)
        with env.begin() as txn:
            assert txn.get(b"m1", db=db) == b"x"
    finally:
        env.close()


def test_concurrent_readers_defrag_and_map_growth_see_whole_commits(tmp_path: Path) -> None:
    """The owner writes batches (growing the map from a tiny start), readers on other threads
    check that every committed state is whole (the counter in meta matches the keys written),
    and defrag runs meanwhile; nothing may fail or tear."""
    be = Backend(db_path(tmp_path), map_size=1 << 16, max_map_size=1 << 28)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                with be.read() as tx:
                    raw = tx.get(META, b"n")
                    n = int(raw) if raw else 0
                    assert tx.count(KEY) == n * 10
                # readers spinning with no pause at all can starve the writer inside py-lmdb's
                # environment lock for minutes on a loaded 2-core machine; real readers pause
                time.sleep(0.0005)
        except BaseException as e:
            errors.append(e)

    def defragger() -> None:
        try:
            while not stop.is_set():
                be.defrag()
                time.sleep(0.01)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)] + [threading.Thread(target=defragger)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < deadline and not errors:
            n += 1
            for j in range(10):
                be.put(KEY, b"%08d-%d" % (n, j), b"v" * 300, append=True)
            be.put(META, b"n", b"%d" % n)
            be.force_commit()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    assert be.map_size > 1 << 16
    assert len(be.range(KEY)) == n * 10
    be.close()


def test_write_state_listeners_hear_the_commit_request_and_the_unblocking(tmp_path: Path) -> None:
    """The owner needs no polling: a listener is told when a defrag on another thread asks for the
    owner's batch and again when writes are unblocked."""
    with Backend(db_path(tmp_path)) as be:
        _fill(be, 200)
        be.put(KEY, b"pending", b"1")
        woken = threading.Semaphore(0)
        calls: list[int] = []

        def listener() -> None:
            calls.append(1)
            woken.release()

        remove = be.listen_write_state(listener)
        t = threading.Thread(target=be.defrag)
        t.start()
        # the owner sleeps on the listener only: without its wake-ups this would never end
        assert woken.acquire(timeout=10), "no commit request heard"
        while True:
            be.commit_if_due()
            if not be.write_blocked:
                break
            assert woken.acquire(timeout=10), "no wake-up from the backend"
        t.join(10)
        assert not t.is_alive()
        remove()
        heard = len(calls)
        be.put(KEY, b"after", b"2")
        be.force_commit()
        assert len(calls) == heard  # a removed listener hears nothing
        assert be.get(KEY, b"pending") == b"1"


def test_defrag_waits_for_other_processes_that_have_the_file_open(tmp_path: Path) -> None:
    """LMDB keeps its lock file's state while any process has the environment open, so a file
    swapped in while another process holds the old one would be reopened with the old file's
    transaction state (seen: buckets missing about half the time). Defrag's swap waits until the
    registered external readers are done, and new ones wait for the swap."""
    with Backend(db_path(tmp_path)) as be:
        _fill(be, 300)
        for j in range(150):
            be.delete(KEY, b"%08d" % j)
        be.force_commit()
        script = (
            "import lmdb, sys, time\n"
            "env = lmdb.open(sys.argv[1], subdir=False, readonly=True, lock=True, max_dbs=64)\n"
            "print('open', flush=True)\n"
            "sys.stdin.readline()\n"
            "env.close()\n"
        )
        defragger = threading.Thread(target=be.defrag)
        with be.external_reader() as path:
            child = subprocess.Popen([sys.executable, "-c", script, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
            try:
                assert child.stdout is not None and child.stdout.readline() == "open\n"
                defragger.start()
                defragger.join(3)
                assert defragger.is_alive(), "defrag swapped the file under another process"
                # reads go on meanwhile (the swap has not begun)
                assert in_thread(lambda: be.get(KEY, b"%08d" % 200)) == bytes([200 % 251]) * 512
            finally:
                assert child.stdin is not None
                child.stdin.write("\n")
                child.stdin.flush()
                child.wait(30)
        defragger.join(60)
        assert not defragger.is_alive()
        assert be.get(KEY, b"%08d" % 299) == bytes([299 % 251]) * 512
        assert be.get(KEY, b"%08d" % 0) is None
        be.put(KEY, b"after", b"1")
        be.force_commit()
        assert be.get(KEY, b"after") == b"1"


# Run in a child: RLIMIT_FSIZE makes the database file's growth fail (EFBIG, with SIGXFSZ
# ignored; LMDB's commit reports an I/O error, as on the full tmpfs of the disk-full scenario),
# and the limit must not touch the test process's own files.
_FAILING_COMMIT = """
import os, resource, signal, sys, threading
from petcd.backend import KEY, Backend, CommitFailedError
be = Backend(sys.argv[1], batch_interval=0)
be.put(KEY, b"kept", b"1")
be.force_commit()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.stat(sys.argv[1]).st_size + 8192, resource.RLIM_INFINITY))
be.put(KEY, b"lost", b"x" * 200000)
# another thread that asks the owner for a commit learns of the failure instead of waiting on
waiter_saw = []
def wait_for_commit():
    try:
        be.force_commit()
        waiter_saw.append("committed")
    except CommitFailedError:
        waiter_saw.append("refused")
waiter = threading.Thread(target=wait_for_commit)
waiter.start()
while not be._commit_requested:
    pass
try:
    be.commit_if_due()
except CommitFailedError:
    raise
except Exception as exc:
    print("commit failed:", exc)
waiter.join(10)
print("waiter:", waiter_saw)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
for name, attempt in (("put", lambda: be.put(KEY, b"after", b"1")), ("commit_if_due", be.commit_if_due),
                      ("force_commit", be.force_commit)):
    try:
        attempt()
        print(name, "went through")
    except CommitFailedError as exc:
        print(name, "refused:", exc)
print("reads:", be.get(KEY, b"kept"), be.get(KEY, b"lost"), be.get(KEY, b"after"))
be.close()
"""


def test_a_failed_commit_stops_every_later_write(tmp_path: Path) -> None:
    """A batch lost to a failed commit must not be followed by another batch: that one's
    consistent index would tell WAL replay to skip the lost entries."""
    path = db_path(tmp_path)
    r = subprocess.run([sys.executable, "-c", _FAILING_COMMIT, path], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("commit failed: mdb_txn_commit"), r.stdout
    assert lines[1] == "waiter: ['refused']", r.stdout
    for name, line in zip(("put", "commit_if_due", "force_commit"), lines[2:5], strict=True):
        assert line.startswith(f"{name} refused: backend: a batch commit failed (mdb_txn_commit"), r.stdout
    assert lines[5] == "reads: b'1' None None", r.stdout
    # what was committed before the failure is all the file holds
    with Backend(path) as be:
        assert (be.get(KEY, b"kept"), be.get(KEY, b"lost"), be.get(KEY, b"after")) == (b"1", None, None)
