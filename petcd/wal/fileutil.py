"""Small filesystem helpers: directory fsync, an exclusive directory lock, preallocation."""

from __future__ import annotations

import errno
import fcntl
import os

from petcd.wal.errors import WALError

LOCK_FILE_NAME = "LOCK"


def fsync_dir(path: str) -> None:
    """Make a create / rename / unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    """Reserve `size` bytes for the file so later appends neither grow it nor hit ENOSPC.

    Filesystems without fallocate support just skip it: preallocation is an optimisation.
    """
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise


class DirLock:
    """An exclusive flock on `<dir>/LOCK`, held for the life of the object.

    flock locks belong to the open file description, so a second open in the same process
    conflicts too, which is what tests and an accidental double start need.
    """

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, LOCK_FILE_NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WALError(
                f"wal: directory {directory} is locked by another process (lock file {self.path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
