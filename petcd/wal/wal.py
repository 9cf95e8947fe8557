"""The write-ahead log: create / open+read_all / save / cut / release / purge.

Life of a WAL object:

    create(dir, metadata) ---------------------------> appending
    open(dir, snap) --> read_all() (repairs the tail) --> appending
    appending: save(), save_snapshot(), release_lock_to(), purge(), close()

Appends go to the last segment. A save() encodes all of its records into one buffer, writes it
with one pwrite loop and, when asked, makes it durable with one fdatasync (group commit: the
caller batches a whole Ready). When the segment reaches `segment_size` it is cut: the old file
is trimmed to its data and fsynced, and a new one holding a crc record, the metadata and the
last hard state is written under a temporary name, fsynced and renamed into place, so a
segment never appears half-written.

A write that fails (ENOSPC, EIO) is undone by truncating the file back to where the write
began; if even that fails, the WAL refuses further writes and the partial record is a torn
tail that the next open cuts off.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from types import TracebackType

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.stats import Durations, exponential_buckets
from petcd.wal.errors import SnapshotMismatchError, WALError, WALNotFoundError
from petcd.wal.fileutil import LOCK_FILE_NAME, DirLock, fsync_dir
from petcd.wal.fileutil import preallocate as _preallocate
from petcd.wal.reader import read_log
from petcd.wal.record import RecordType, encode, encode_entries
from petcd.wal.segments import Segment, list_segments, search_index, segment_name
from petcd.wal.types import WalSnapshot

log = logging.getLogger("petcd.wal")

SEGMENT_SIZE = 64 * 1024 * 1024
_EMPTY_STATE = raftpb.HardState()


def _is_empty_state(hs: raftpb.HardState) -> bool:
    return hs.term == 0 and hs.vote == 0 and hs.commit == 0


# etcd's buckets for etcd_disk_wal_fsync_duration_seconds: 1 ms to 8.192 s
WAL_FSYNC_BUCKETS = exponential_buckets(0.001, 2, 14)


class WAL:
    """A write-ahead log in one directory. Build with WAL.create or WAL.open, never directly."""

    def __init__(
        self,
        directory: str,
        lock: DirLock,
        segments: list[Segment],
        *,
        segment_size: int,
        preallocate: bool,
        unsafe_no_fsync: bool = False,
    ) -> None:
        self.directory = directory
        # --unsafe-no-fsync: saves are never fdatasync'ed (a crash may lose acknowledged entries)
        self._unsafe_no_fsync = unsafe_no_fsync
        # for /metrics (etcd_disk_wal_fsync_duration_seconds, etcd_disk_wal_write_bytes_total)
        self.fsync_durations = Durations(WAL_FSYNC_BUCKETS)
        self.bytes_written = 0
        self.segment_size = segment_size
        self._preallocate = preallocate
        self._lock = lock
        self._segments = segments
        self._mu = threading.Lock()
        self._fd: int | None = None
        self._offset = 0
        self._crc = 0
        self._enti = 0
        self._state = raftpb.HardState()
        self._metadata = b""
        self._removable = 0  # segments[:_removable] may be deleted by purge()
        self._start = WalSnapshot()
        self._start_pos = 0
        self._appending = False
        self._failed: str | None = None

    # ---- construction -------------------------------------------------------------------

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        try:
            return bool(list_segments(os.fspath(directory)))
        except WALError:
            return True  # files are there, even if damaged

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        metadata: bytes,
        *,
        segment_size: int = SEGMENT_SIZE,
        preallocate: bool = True,
        unsafe_no_fsync: bool = False,
    ) -> WAL:
        """Make a new WAL holding `metadata` and a zero snapshot marker, ready to append.

        Built in `<dir>.tmp` and renamed into place, so a crash never leaves a half-made WAL.
        """
        d = os.path.abspath(os.fspath(directory))
        if WAL.exists(d):
            raise WALError(f"wal: {d} already holds a WAL")
        if os.path.isdir(d):
            leftovers = [n for n in os.listdir(d) if n != LOCK_FILE_NAME and not n.endswith(".tmp")]
            if leftovers:
                raise WALError(f"wal: {d} exists and is not empty: {sorted(leftovers)[:5]}")
        tmpdir = d + ".tmp"
        shutil.rmtree(tmpdir, ignore_errors=True)
        os.makedirs(tmpdir)
        lock = DirLock(tmpdir)
        try:
            parts: list[bytes] = []
            crc = encode(RecordType.CRC, b"", 0, parts)
            crc = encode(RecordType.METADATA, metadata, crc, parts)
            crc = encode(RecordType.SNAPSHOT, WalSnapshot().encode(), crc, parts)
            buf = b"".join(parts)
            name = segment_name(0, 0)
            fd = os.open(os.path.join(tmpdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, buf, 0)
                if preallocate:
                    _preallocate(fd, segment_size)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            fsync_dir(tmpdir)
            if os.path.isdir(d):
                shutil.rmtree(d)
            os.rename(tmpdir, d)
            fsync_dir(os.path.dirname(d))
        except OSError as e:
            lock.release()
            raise _os_error("creating wal in " + d, e) from e
        except BaseException:
            lock.release()
            raise
        lock.path = os.path.join(d, LOCK_FILE_NAME)
        w = cls(d, lock, [Segment(0, 0, os.path.join(d, name))], segment_size=segment_size, preallocate=preallocate,
                unsafe_no_fsync=unsafe_no_fsync)
        w._fd = fd
        w._offset = len(buf)
        w._crc = crc
        w._metadata = metadata
        w._appending = True
        return w

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        snap: WalSnapshot = WalSnapshot(),  # noqa: B008 (frozen, safe to share)
        *,
        segment_size: int = SEGMENT_SIZE,
        preallocate: bool = True,
        unsafe_no_fsync: bool = False,
    ) -> WAL:
        """Lock the WAL for appending; call read_all() next. Reading starts at `snap`."""
        d = os.path.abspath(os.fspath(directory))
        segs = list_segments(d)
        if not segs:
            raise WALNotFoundError(f"wal: no WAL segments in {d}")
        lock = DirLock(d)
        try:
            pos = search_index(segs, snap.index)
            if pos < 0:
                raise WALError(
                    f"wal: no segment in {d} reaches back to snapshot index {snap.index} "
                    f"(oldest is {segs[0].name})"
                )
            for n in os.listdir(d):
                if n.endswith(".wal.tmp"):  # a cut that crashed before its rename
                    os.remove(os.path.join(d, n))
        except BaseException:
            lock.release()
            raise
        w = cls(d, lock, segs, segment_size=segment_size, preallocate=preallocate, unsafe_no_fsync=unsafe_no_fsync)
        w._start = snap
        w._start_pos = pos
        return w

    @staticmethod
    def valid_snapshot_entries(directory: str | os.PathLike[str]) -> list[WalSnapshot]:
        """Snapshot markers in the WAL whose index is committed by the last hard state.

        Reads without locking or changing anything, so it works beside an open WAL.
        """
        d = os.fspath(directory)
        segs = list_segments(d)
        if not segs:
            raise WALNotFoundError(f"wal: no WAL segments in {d}")
        contents = read_log(segs, WalSnapshot(), collect_entries=False)
        return [s for s in contents.snapshots if s.index <= contents.state.commit]

    # ---- reading ------------------------------------------------------------------------

    def read_all(self) -> tuple[bytes, raftpb.HardState, list[raftpb.Entry]]:
        """Metadata, last hard state and the entries after the open snapshot; then append mode.

        A torn last record is cut off (and logged) so new records follow the last good one.
        On any error the WAL is closed (its lock released), so the caller may open it again.
        """
        with self._mu:
            if self._appending or not self._lock.held:
                raise WALError("wal: read_all is only allowed once, right after open")
            try:
                return self._read_all_locked()
            except BaseException:
                self._close_locked()
                raise

    def _read_all_locked(self) -> tuple[bytes, raftpb.HardState, list[raftpb.Entry]]:
        segs = self._segments[self._start_pos :]
        contents = read_log(segs, self._start)
        if not self._start.is_zero and not contents.snap_found:
            raise SnapshotMismatchError(
                f"wal: snapshot index {self._start.index} term {self._start.term} not found in {self.directory}"
            )
        if contents.metadata is None:
            raise WALError(f"wal: no metadata record in {self.directory}")
        last = self._segments[-1]
        try:
            fd = os.open(last.path, os.O_WRONLY)
        except OSError as e:
            raise _os_error("opening " + last.path, e) from e
        try:
            if contents.dirty_tail:
                dropped = contents.file_size - contents.end
                log.warning(
                    "wal: torn tail in %s at offset %d: truncating %d bytes",
                    last.path, contents.end, dropped,
                )
                os.ftruncate(fd, contents.end)
                if self._preallocate:
                    _preallocate(fd, self.segment_size)
                os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise _os_error("repairing the tail of " + last.path, e) from e
        self._fd = fd
        self._offset = contents.end
        self._crc = contents.crc
        self._enti = contents.enti
        self._state = contents.state
        self._metadata = contents.metadata
        self._appending = True
        return contents.metadata, contents.state, contents.entries

    # ---- writing ------------------------------------------------------------------------

    def save(
        self,
        hard_state: raftpb.HardState | None,
        entries: Sequence[raftpb.Entry],
        sync: bool = True,
    ) -> None:
        """Append entries then the hard state (if given and not empty), in one write.

        With `sync`, returns only once the bytes are on stable storage.
        """
        if hard_state is not None and _is_empty_state(hard_state):
            hard_state = None
        if hard_state is None and not entries:
            return
        with self._mu:
            fd = self._check_writable()
            parts: list[bytes] = []
            crc = self._crc
            crc = encode_entries(entries, crc, parts)
            if hard_state is not None:
                crc = encode(RecordType.STATE, hard_state.SerializeToString(), crc, parts)
            self._write(fd, b"".join(parts))
            self._crc = crc
            if entries:
                self._enti = entries[-1].index
            if hard_state is not None:
                self._state = hard_state
            if self._offset >= self.segment_size:
                self._cut()
            elif sync:
                self._sync(fd)

    def save_snapshot(self, snap: WalSnapshot) -> None:
        """Record a snapshot marker and fsync it."""
        with self._mu:
            fd = self._check_writable()
            parts: list[bytes] = []
            crc = encode(RecordType.SNAPSHOT, snap.encode(), self._crc, parts)
            self._write(fd, b"".join(parts))
            self._crc = crc
            if snap.index > self._enti:
                self._enti = snap.index
            self._sync(fd)

    def sync(self) -> None:
        with self._mu:
            self._sync(self._check_writable())

    def _check_writable(self) -> int:
        if self._failed is not None:
            raise WALError(f"wal: refusing to write after an earlier failure: {self._failed}")
        if not self._appending or self._fd is None:
            raise WALError("wal: not open for appending (call read_all() after open, or it was closed)")
        return self._fd

    def _write(self, fd: int, buf: bytes) -> None:
        start = self._offset
        try:
            _write_all(fd, buf, start)
        except OSError as e:
            # undo the partial write so the file ends on a whole record
            try:
                os.ftruncate(fd, start)
            except OSError as e2:
                self._failed = f"could not truncate {self._segments[-1].path} after failed write: {e2}"
            raise _os_error(f"writing {len(buf)} bytes to {self._segments[-1].path}", e) from e
        self._offset = start + len(buf)
        self.bytes_written += len(buf)

    def _sync(self, fd: int) -> None:
        if self._unsafe_no_fsync:
            return
        # real elapsed time, not the injected clock: this measures the disk, for /metrics only
        started = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as e:
            # after a failed fsync the page cache state is unknown: never write again
            self._failed = f"fdatasync of {self._segments[-1].path} failed: {e}"
            raise _os_error("syncing " + self._segments[-1].path, e) from e
        self.fsync_durations.observe(time.perf_counter() - started)

    def _cut(self) -> None:
        """Finish the current segment and start the next one."""
        assert self._fd is not None
        old_fd = self._fd
        try:
            os.ftruncate(old_fd, self._offset)  # drop the preallocated zeros
            os.fsync(old_fd)
        except OSError as e:
            self._failed = f"finishing segment {self._segments[-1].path} failed: {e}"
            raise _os_error("finishing segment " + self._segments[-1].path, e) from e
        seq = self._segments[-1].seq + 1
        index = self._enti + 1
        path = os.path.join(self.directory, segment_name(seq, index))
        tmp = path + ".tmp"
        parts: list[bytes] = []
        crc = encode(RecordType.CRC, b"", self._crc, parts)
        crc = encode(RecordType.METADATA, self._metadata, crc, parts)
        if not _is_empty_state(self._state):
            crc = encode(RecordType.STATE, self._state.SerializeToString(), crc, parts)
        buf = b"".join(parts)
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            _write_all(fd, buf, 0)
            if self._preallocate:
                _preallocate(fd, self.segment_size)
            os.fsync(fd)
            os.rename(tmp, path)
            fsync_dir(self.directory)
        except OSError as e:
            # stay on the old (complete, synced) segment; the next save retries the cut
            if fd >= 0:
                os.close(fd)
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise _os_error("starting segment " + path, e) from e
        os.close(old_fd)
        self._fd = fd
        self._offset = len(buf)
        self._crc = crc
        self._segments.append(Segment(seq, index, path))
        log.info("wal: cut segment %s", os.path.basename(path))

    # ---- retention ----------------------------------------------------------------------

    def release_lock_to(self, index: int) -> None:
        """Allow purge() to delete the segments wholly before the one holding `index`.

        Call with a snapshot's index once the snapshot is saved: opening at that snapshot
        starts reading at the segment holding it.
        """
        with self._mu:
            pos = search_index(self._segments, index)
            if pos > self._removable:
                self._removable = pos

    def purge(self, keep: int = 5) -> list[str]:
        """Delete released segments, oldest first, leaving at least `keep` segment files.

        keep=0 keeps everything, as etcd's --max-wals=0 does.
        """
        if keep <= 0:
            return []
        with self._mu:
            n = min(self._removable, len(self._segments) - keep)
            if n <= 0:
                return []
            removed: list[str] = []
            for seg in self._segments[:n]:
                try:
                    os.remove(seg.path)
                except FileNotFoundError:
                    pass
                removed.append(seg.path)
                log.info("wal: purged segment %s", seg.name)
            fsync_dir(self.directory)
            del self._segments[:n]
            self._removable -= n
            self._start_pos = max(0, self._start_pos - n)
            return removed

    # ---- misc ---------------------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        with self._mu:
            return list(self._segments)

    @property
    def last_index(self) -> int:
        """Index of the last entry (or snapshot marker) written or read."""
        return self._enti

    def close(self) -> None:
        with self._mu:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._fd is not None:
            try:
                if self._failed is None:
                    os.fdatasync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
        self._appending = False
        self._lock.release()

    def __enter__(self) -> WAL:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _write_all(fd: int, buf: bytes, offset: int) -> None:
    mv = memoryview(buf)
    done = 0
    while done < len(buf):
        n = os.pwrite(fd, mv[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        done += n


def _os_error(what: str, e: OSError) -> WALError:
    if e.errno == errno.ENOSPC:
        return WALError(f"wal: no space left on device while {what}: {e}")
    return WALError(f"wal: error while {what}: {e}")
