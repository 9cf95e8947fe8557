"""Snapshotter: raft snapshots as checksummed files `<term:016x>-<index:016x>.snap`.

File layout: 4-byte magic b"PSNP", u32 LE crc32c of the payload, then the payload, a
serialized raftpb.Snapshot. A file is written under a temporary name, fsynced, renamed into
place and the directory fsynced, so a crash leaves either the whole file or none of it. A file
that fails its check on load is renamed to `<name>.broken` and the next newest one is tried.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
from collections.abc import Iterable

from crc32c import crc32c

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal.errors import WALError
from petcd.wal.fileutil import fsync_dir
from petcd.wal.types import WalSnapshot

log = logging.getLogger("petcd.wal.snap")

_MAGIC = b"PSNP"
_HEADER = struct.Struct("<4sI")
_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
SNAP_SUFFIX = ".snap"
BROKEN_SUFFIX = ".broken"


class SnapshotCorruptError(WALError):
    """A snapshot file fails its crc or cannot be decoded."""


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}{SNAP_SUFFIX}"


class Snapshotter:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = os.fspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        for name in os.listdir(self.dir):
            if name.endswith(SNAP_SUFFIX + ".tmp"):  # a save that crashed before its rename
                os.remove(os.path.join(self.dir, name))

    def save_snap(self, snap: raftpb.Snapshot) -> None:
        """Durably write `snap`; the empty snapshot (index 0) is not written."""
        md = snap.metadata
        if md.index == 0:
            return
        payload = snap.SerializeToString()
        data = _HEADER.pack(_MAGIC, crc32c(payload)) + payload
        path = os.path.join(self.dir, snap_name(md.term, md.index))
        tmp = path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                mv = memoryview(data)
                done = 0
                while done < len(data):
                    done += os.write(fd, mv[done:])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            fsync_dir(self.dir)
        except OSError as e:
            try:
                os.remove(tmp)
            except OSError:
                pass
            what = "no space left on device" if e.errno == errno.ENOSPC else "error"
            raise WALError(f"snap: {what} while saving {path}: {e}") from e

    def snap_names(self) -> list[str]:
        """Snapshot file names, newest (highest term, then index) first."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted((n for n in names if _NAME_RE.match(n)), reverse=True)

    def read(self, name: str) -> raftpb.Snapshot:
        """Decode and check one snapshot file; SnapshotCorruptError if it is damaged."""
        path = os.path.join(self.dir, name)
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < _HEADER.size:
            raise SnapshotCorruptError(f"snap: {path} is too short ({len(data)} bytes)")
        magic, crc = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise SnapshotCorruptError(f"snap: {path} is not a snapshot file (bad magic)")
        payload = data[_HEADER.size :]
        if crc32c(payload) != crc:
            raise SnapshotCorruptError(f"snap: crc mismatch in {path}")
        try:
            snap = raftpb.Snapshot.FromString(payload)
        except Exception as e:
            raise SnapshotCorruptError(f"snap: cannot decode {path}: {e}") from e
        m = _NAME_RE.match(name)
        if m is not None and (int(m.group(1), 16), int(m.group(2), 16)) != (
            snap.metadata.term,
            snap.metadata.index,
        ):
            raise SnapshotCorruptError(f"snap: {path} holds term {snap.metadata.term} index {snap.metadata.index}")
        return snap

    def load(self) -> raftpb.Snapshot | None:
        """The newest snapshot that checks out, or None. Damaged files become `.broken`."""
        return self._load_first(self.snap_names())

    def load_newest_available(self, walsnaps: Iterable[WalSnapshot]) -> raftpb.Snapshot | None:
        """The newest snapshot that is also recorded in the WAL (see WAL.valid_snapshot_entries)."""
        wanted = {(s.term, s.index) for s in walsnaps}
        names = [n for n in self.snap_names() if _term_index(n) in wanted]
        return self._load_first(names)

    def _load_first(self, names: list[str]) -> raftpb.Snapshot | None:
        for name in names:
            try:
                return self.read(name)
            except SnapshotCorruptError as e:
                log.warning("%s; renaming it to %s%s", e, name, BROKEN_SUFFIX)
                self._mark_broken(name)
            except OSError as e:
                log.warning("snap: cannot read %s: %s", name, e)
        return None

    def _mark_broken(self, name: str) -> None:
        path = os.path.join(self.dir, name)
        try:
            os.rename(path, path + BROKEN_SUFFIX)
            fsync_dir(self.dir)
        except OSError as e:
            log.warning("snap: cannot rename %s: %s", path, e)

    def purge(self, keep: int = 5) -> list[str]:
        """Delete all but the newest `keep` snapshot files (keep=0 keeps all, as --max-snapshots=0)."""
        if keep <= 0:
            return []
        removed: list[str] = []
        for name in self.snap_names()[keep:]:
            path = os.path.join(self.dir, name)
            try:
                os.remove(path)
                removed.append(path)
            except FileNotFoundError:
                pass
        if removed:
            fsync_dir(self.dir)
        return removed


def _term_index(name: str) -> tuple[int, int] | None:
    m = _NAME_RE.match(name)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)
