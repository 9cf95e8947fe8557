"""`etcdctl snapshot save` from petcd against the same from real etcd 3.5.1, same data, same run.

Not a test. Starts one etcd 3.5.1 and one petcd (default flags, loopback), writes the same
--mb megabytes to both (--value-size-byte values, 128 puts per Txn), then --repeat times,
alternating the servers: `etcdctl snapshot save` (etcdctl 3.5.1; for petcd this is the Snapshot
RPC converting its LMDB backend to an etcd bbolt file in a child process) and `etcdutl snapshot
restore` of the saved file. Each saved file is checked with `etcdutl snapshot status` (revision
equal to the server's). Prints the median seconds per server and the petcd/etcd ratio.

    python bench/snapshot_save_compare.py --mb 100 --repeat 3

Servers are stopped by their own PID, never by name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# the petcd member processes run this tree too, not whatever checkout an install points at
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)

from petcd.proto.etcdserverpb import rpc_pb2 as pb  # noqa: E402
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc  # noqa: E402
from tests.harness.procs import ETCDCTL_BIN, ETCDUTL_BIN, Server, clean_env  # noqa: E402


def load(server: Server, mb: int, value_size: int) -> int:
    n = mb * 1_000_000 // value_size
    value = b"x" * value_size
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)
        for start in range(0, n, 128):
            ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"bench/snap/%08d" % i, value=value))
                   for i in range(start, min(n, start + 128))]
            kv.Txn(pb.TxnRequest(success=ops), timeout=30)
        return int(kv.Range(pb.RangeRequest(key=b"bench/snap/00000000"), timeout=10).header.revision)


def run(argv: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, env={**clean_env(), "ETCDCTL_API": "3"}, timeout=300)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--value-size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="snapsave-"))
    servers = {"etcd": Server("etcd", root / "etcd"), "petcd": Server("petcd", root / "petcd")}
    save: dict[str, list[float]] = {k: [] for k in servers}
    restore: dict[str, list[float]] = {k: [] for k in servers}
    size: dict[str, int] = {}
    try:
        revs = {}
        for kind, s in servers.items():
            s.start()
            revs[kind] = load(s, args.mb, args.value_size)
        for i in range(args.repeat):
            for kind, s in servers.items():
                path = root / f"{kind}-{i}.db"
                save[kind].append(run([str(ETCDCTL_BIN), f"--endpoints={s.endpoint}", "snapshot", "save", str(path)]))
                st = subprocess.run([str(ETCDUTL_BIN), "snapshot", "status", str(path), "-w", "json"],
                                    capture_output=True, text=True)
                if st.returncode != 0:
                    keep = Path(tempfile.gettempdir()) / f"snapsave-failed-{kind}-{i}.db"
                    shutil.copy(path, keep)
                    raise SystemExit(f"etcdutl snapshot status of {kind}'s snapshot failed (kept {keep}): {st.stderr}")
                status = json.loads(st.stdout)
                assert status["revision"] == revs[kind], (kind, status, revs[kind])
                size[kind] = path.stat().st_size
                out = root / f"{kind}-{i}.restored"
                restore[kind].append(run([str(ETCDUTL_BIN), "snapshot", "restore", str(path), f"--data-dir={out}"]))
                shutil.rmtree(out)
                path.unlink()
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"data: {args.mb} MB of {args.value_size}-byte values; {args.repeat} runs each, medians")
    for kind in servers:
        print(f"{kind:6} snapshot save {statistics.median(save[kind]):6.2f} s  (file {size[kind] / 1e6:.1f} MB)"
              f"   etcdutl restore of it {statistics.median(restore[kind]):6.2f} s")
    print(f"petcd/etcd snapshot save: {statistics.median(save['petcd']) / statistics.median(save['etcd']):.2f}x")


if __name__ == "__main__":
    main()
