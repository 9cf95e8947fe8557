"""etcd-format snapshots of petcd's backend, and petcd backends made from etcd's.

An etcd snapshot (what `etcdctl snapshot save` stores and `etcdutl snapshot restore` reads) is a
bbolt database followed by the sha256 of the database bytes (32 bytes). etcd's Snapshot RPC
streams the database in chunks, each with the bytes still to come in `remaining_bytes`, then one
last message whose blob is the sha256 and whose remaining_bytes is 0.

Export reads petcd's LMDB file in one read transaction (a consistent view, writers go on),
converts each bucket to etcd's encoding (see etcd_layout) and writes the bbolt file to a
temporary file beside the database, which is then streamed and removed. Import reads a bbolt
file bucket by bucket into a petcd Backend, committing every `batch_limit` writes so memory stays
bounded whatever the size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import BinaryIO

from petcd.backend import ALL_BUCKETS, KEY, MEMBERS, Backend, ReadTx
from petcd.bbolt.etcd_layout import from_etcd_bucket, to_etcd_bucket
from petcd.bbolt.export import export_in_child
from petcd.bbolt.reader import BoltReader
from petcd.bbolt.writer import Bucket, write_bolt
from petcd.proto.serverpb import internal_pb2 as serverpb

log = logging.getLogger("petcd.bbolt")

SHA256_SIZE = 32
CHUNK_SIZE = 32 * 1024  # etcd's snapshot chunk
_READ_BATCH = 2048


def _scan(tx: ReadTx, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every pair of a bucket in key order, read in batches through one transaction."""
    start = b""
    while True:
        items = tx.range(bucket, start, None, _READ_BATCH)
        yield from items
        if len(items) < _READ_BATCH:
            return
        start = items[-1][0] + b"\x00"


def write_etcd_tx(tx: ReadTx, f: BinaryIO) -> int:
    """Write what a read transaction of petcd's backend sees as an etcd 3.5 bbolt database to f
    (seekable, from its current position); returns the database size."""
    members = [serverpb.MemberRecord.FromString(v) for _k, v in tx.range(MEMBERS)]
    buckets = [(name, Bucket(to_etcd_bucket(name, _scan(tx, name), members))) for name in sorted(ALL_BUCKETS)]
    return write_bolt(f, buckets)


def write_etcd_db(backend: Backend, f: BinaryIO) -> int:
    """write_etcd_tx over one consistent view of the backend (committed state, or the open batch
    on its owner thread)."""
    with backend.read() as tx:
        return write_etcd_tx(tx, f)


class EtcdSnapshot:
    """An etcd-format snapshot of a backend, written to an unlinked temporary file (in tmp_dir,
    by default the backend's directory) and read back in chunks: `db_size` database bytes, then
    the 32-byte sha256 of them.

    in_child=True (the default) converts in a child process that reads the LMDB file itself
    (petcd.bbolt.export), so the member's GIL and event loop are not held for the conversion; it
    sees committed state only (as Backend.snapshot_to). in_child=False converts on this thread
    through backend.read()."""

    def __init__(self, backend: Backend, tmp_dir: str | None = None, in_child: bool = True) -> None:
        directory = tmp_dir if tmp_dir is not None else os.path.dirname(os.path.abspath(backend.path))
        # unlinked from the start (O_TMPFILE): a crash of either process leaves no file behind
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory, prefix="etcd-snapshot-")
        try:
            if in_child:
                self.db_size = export_in_child(backend.path, self._file.fileno())
            else:
                self.db_size = write_etcd_db(backend, self._file)
        except BaseException:
            self._file.close()
            raise
        self.size = self.db_size + SHA256_SIZE

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The database in chunks of at most chunk_size bytes, then its sha256 as the last one."""
        h = hashlib.sha256()
        self._file.seek(0)
        left = self.db_size
        while left > 0:
            chunk = self._file.read(min(chunk_size, left))
            if not chunk:
                raise OSError("snapshot: temporary file shorter than the database written to it")
            h.update(chunk)
            left -= len(chunk)
            yield chunk
        yield h.digest()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EtcdSnapshot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def stream_etcd_snapshot(
    backend: Backend, chunk_size: int = CHUNK_SIZE, tmp_dir: str | None = None, in_child: bool = True
) -> Iterator[bytes]:
    """The Snapshot RPC's blobs: the backend as an etcd bbolt database in chunks, then the sha256
    (see EtcdSnapshot, whose db_size the RPC's remaining_bytes needs)."""
    with EtcdSnapshot(backend, tmp_dir, in_child) as snap:
        yield from snap.chunks(chunk_size)


def save_etcd_snapshot(backend: Backend, path: str | os.PathLike[str]) -> int:
    """Write an etcd snapshot file (database + sha256 trailer), as `etcdctl snapshot save` would
    store it; returns the file size."""
    with open(path, "w+b") as f:
        size = write_etcd_db(backend, f)
        f.seek(0)
        h = hashlib.sha256()
        left = size
        while left > 0:
            chunk = f.read(min(1 << 20, left))
            h.update(chunk)
            left -= len(chunk)
        f.seek(size)
        f.write(h.digest())
        f.flush()
        os.fsync(f.fileno())
    return size + SHA256_SIZE


def import_etcd_db(
    db: BoltReader,
    backend: Backend,
    batch_limit: int = 10000,
    progress: Callable[[int, int], None] | None = None,
) -> dict[bytes, int]:
    """Copy an etcd bbolt database into a petcd backend (on this thread, which must own no other
    batch), converting each bucket (etcd_layout); returns the pairs written per bucket.
    progress(bytes, pairs), if given, hears the key and value bytes and the pairs written so far
    after every batch and at the end."""
    written: dict[bytes, int] = {}
    total_bytes = 0
    total_pairs = 0
    for name in db.buckets():
        if name not in ALL_BUCKETS:
            log.warning("bucket %r is not part of etcd 3.5's layout; not copied", name)
            continue
        pairs = from_etcd_bucket(name, db.pairs(name))
        n = 0
        # revision keys arrive in order: LMDB's append mode fills pages completely
        ordered = name == KEY
        for k, v in pairs if ordered else sorted(pairs):
            backend.put(name, k, v, append=ordered)
            n += 1
            total_bytes += len(k) + len(v)
            if n % batch_limit == 0:
                backend.force_commit()
                if progress is not None:
                    progress(total_bytes, total_pairs + n)
        written[name] = n
        total_pairs += n
    backend.force_commit()
    if progress is not None:
        progress(total_bytes, total_pairs)
    return written
