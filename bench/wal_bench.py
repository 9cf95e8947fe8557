"""WAL write throughput: entries/s with fsync for batches of 1, 16 and 256 x 256-byte entries.

    python bench/wal_bench.py [--seconds 2] [--dir DIR] [--no-preallocate]

Each save() is one write + one fdatasync (what the raft driver does per Ready), so batch 1 is
the fsync-bound case and larger batches show what group commit buys. A raw
write+fdatasync loop of the same size is printed for reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.wal import WAL


def bench_wal(root: str, batch: int, seconds: float, preallocate: bool) -> tuple[float, float, int]:
    d = os.path.join(root, f"wal-{batch}")
    w = WAL.create(d, b"bench", preallocate=preallocate)
    payload = os.urandom(256)
    index = 0
    saves = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        ents = [raftpb.Entry(term=1, index=index + k + 1, data=payload) for k in range(batch)]
        index += batch
        w.save(raftpb.HardState(term=1, vote=1, commit=index), ents, sync=True)
        saves += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    segments = len(w.segments)
    w.close()
    shutil.rmtree(d)
    return index / elapsed, saves / elapsed, segments


def bench_raw(root: str, size: int, seconds: float) -> float:
    path = os.path.join(root, "raw")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    buf = os.urandom(size)
    n = 0
    off = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        os.pwrite(fd, buf, off)
        off += size
        os.fdatasync(fd)
        n += 1
    elapsed = time.perf_counter() - start
    os.close(fd)
    os.remove(path)
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--no-preallocate", action="store_true")
    ns = ap.parse_args()
    root = tempfile.mkdtemp(prefix="walbench-", dir=ns.dir)
    try:
        print(f"dir={root} preallocate={not ns.no_preallocate} seconds={ns.seconds}")
        print(f"raw pwrite(4 KiB)+fdatasync: {bench_raw(root, 4096, ns.seconds):,.0f}/s")
        print(f"{'batch':>6} {'entries/s':>12} {'saves(fsyncs)/s':>16} {'MB/s':>8} {'segments':>9}")
        for batch in (1, 16, 256):
            eps, sps, segs = bench_wal(root, batch, ns.seconds, not ns.no_preallocate)
            print(f"{batch:>6} {eps:>12,.0f} {sps:>16,.0f} {eps * 256 / 1e6:>8.1f} {segs:>9}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
