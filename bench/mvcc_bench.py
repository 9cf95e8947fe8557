"""Benchmark of the MVCC store on the LMDB backend (not a test; prints numbers).

Loads N keys (default 100,000) of V-byte values (default 256) through KVStore, one put per write
txn with the consistent index set, the backend batch committed on its interval/size as the server
does; then single-key range reads at random, 100-key range reads, reopen (index rebuild) time,
file sizes and RSS.

    python bench/mvcc_bench.py [--keys 100000] [--value-size 256] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time

from petcd.backend import Backend
from petcd.mvcc import KVStore, RangeOptions


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help="data directory (default: a temporary one, removed after)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    rnd = random.Random(args.seed)
    workdir = args.dir or tempfile.mkdtemp(prefix="petcd-mvcc-bench-")
    path = os.path.join(workdir, "member", "snap", "db")
    keys = [b"/registry/bench/key-%08d" % i for i in range(args.keys)]
    rnd.shuffle(keys)
    value = bytes(rnd.getrandbits(8) for _ in range(args.value_size))
    out: dict[str, float] = {}
    rss0, _ = rss_mib()
    try:
        be = Backend(path, batch_interval=0.1, batch_limit=10000, clock=time.monotonic)
        store = KVStore(be)
        t0 = time.perf_counter()
        c0 = time.process_time()
        for i, k in enumerate(keys, start=1):
            with store.write() as txn:
                txn.put(k, value)
                txn.set_consistent_index(i, term=2)
            be.commit_if_due()
        be.force_commit()
        dt = time.perf_counter() - t0
        out["puts_per_s"] = args.keys / dt
        # CPU time is steadier than wall time on a shared machine
        out["puts_per_cpu_s"] = args.keys / (time.process_time() - c0)
        out["load_s"] = dt
        out["commits"] = be.commits
        rss1, peak1 = rss_mib()
        out["rss_before_mib"] = rss0
        out["rss_after_load_mib"] = rss1
        out["rss_peak_mib"] = peak1
        out["db_size_mib"] = be.size() / 2**20
        out["db_in_use_mib"] = be.size_in_use() / 2**20

        picks = [keys[rnd.randrange(len(keys))] for _ in range(args.reads)]
        t0 = time.perf_counter()
        c0 = time.process_time()
        for k in picks:
            r = store.range(k)
            assert r.count == 1
        out["single_key_ranges_per_s"] = args.reads / (time.perf_counter() - t0)
        out["single_key_ranges_per_cpu_s"] = args.reads / (time.process_time() - c0)

        sorted_keys = sorted(keys)
        n_scans = max(1, args.reads // 100)
        starts = [sorted_keys[rnd.randrange(max(1, len(keys) - 100))] for _ in range(n_scans)]
        t0 = time.perf_counter()
        c0 = time.process_time()
        for k in starts:
            r = store.range(k, b"\x00", RangeOptions(limit=100))
        dt = time.perf_counter() - t0
        out["range100_per_s"] = n_scans / dt
        out["range100_kvs_per_s"] = n_scans * 100 / dt
        out["range100_per_cpu_s"] = n_scans / (time.process_time() - c0)

        t0 = time.perf_counter()
        r = store.range(b"\x00", b"\x00", RangeOptions(count_only=True))
        out["count_all_s"] = time.perf_counter() - t0
        assert r.count == args.keys

        be.close()
        t0 = time.perf_counter()
        be = Backend(path)
        store = KVStore(be)
        out["reopen_s"] = time.perf_counter() - t0
        assert store.rev == args.keys + 1
        be.close()
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"keys={args.keys} value_size={args.value_size}")
        for k, v in out.items():
            print(f"  {k:28s} {v:12.1f}" if isinstance(v, float) else f"  {k:28s} {v:12d}")


if __name__ == "__main__":
    main()
