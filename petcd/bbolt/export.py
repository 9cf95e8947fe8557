"""Export petcd's LMDB file as an etcd bbolt database from a child process.

`python -m petcd.bbolt.export SRC DEST` opens SRC as one more read-only LMDB reader (LMDB is
multi-process safe, and a read transaction never waits for the member's open write batch),
writes the committed state to DEST in etcd's format and prints the database size. DEST is a
path, or `fd:N` for a file descriptor inherited from the parent (an unlinked temporary file, so
that nothing is left behind whoever dies during the export). The writer is
pure Python and holds the GIL while it runs (about 1-1.5 s per 100 MB here); in a child it takes
none of the member's event loop time.
"""

from __future__ import annotations

import os
import subprocess
import sys

import lmdb

from petcd.backend import ALL_BUCKETS, ReadTx


def export_file(src: str, dest: str | int) -> int:
    """Write the committed state of the LMDB file src to dest (a path or an open, seekable file
    descriptor, written from offset 0) as an etcd bbolt database."""
    from petcd.bbolt.snapshot import write_etcd_tx

    env = lmdb.open(src, subdir=False, readonly=True, lock=True, max_dbs=len(ALL_BUCKETS) + 6, map_size=0)
    try:
        for _ in range(100):
            try:
                with env.begin() as txn:
                    dbs = {name: env.open_db(name, txn=txn, create=False) for name in ALL_BUCKETS}
                    if isinstance(dest, int):
                        os.lseek(dest, 0, os.SEEK_SET)
                        os.ftruncate(dest, 0)
                    with open(dest, "wb", closefd=not isinstance(dest, int)) as f:
                        size = write_etcd_tx(ReadTx(txn, dbs), f)
                        f.flush()
                    return size
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # the member grew the map since this reader opened it
        raise RuntimeError(f"export: {src} kept growing under the reader")
    finally:
        env.close()


def export_in_child(src: str, dest: str | int) -> int:
    """export_file in a child process; returns the database size. dest: a path, or a file
    descriptor of this process that the child inherits."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    target = f"fd:{dest}" if isinstance(dest, int) else dest
    proc = subprocess.run(
        [sys.executable, "-m", "petcd.bbolt.export", src, target],
        capture_output=True, text=True, check=False, env=env,
        pass_fds=(dest,) if isinstance(dest, int) else (),
    )
    if proc.returncode != 0:
        raise OSError(f"export: converting {src} failed: {proc.stderr.strip()[-2000:]}")
    return int(proc.stdout.strip())


def main() -> None:
    src, dest = sys.argv[1], sys.argv[2]
    print(export_file(src, int(dest[3:]) if dest.startswith("fd:") else dest))


if __name__ == "__main__":
    main()
