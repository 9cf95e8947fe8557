"""3-member clusters: petcd against etcd 3.5.1 in the same run (issue 11's benchmark).

Not a test. For each kind, a fresh 3-member cluster on loopback (default flags), then:

1. ``etcdctl check perf --load=<l>`` for each load in ``--loads`` (default m,l), with all three
   client URLs as endpoints (etcdctl's clients spread over them);
2. failover, ``--failovers`` times: the leader is killed with SIGKILL and the time from the kill
   to the first acknowledged put through one of the two others is taken (etcdctl, a 1 s command
   timeout, retried at once); the killed member is started again and the cluster waited for.

    python bench/cluster_compare.py [--loads m,l] [--failovers 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from kv_compare import PerfResult, clear_check_perf_prefix, loadavg, parse_check_perf  # noqa: E402

from tests.harness.procs import ETCDCTL_BIN, Kind, Server, ServerGroup, clean_env  # noqa: E402

CHECK_PERF_TIMEOUT = 400.0


@dataclass
class Failover:
    seconds: float
    killed: str
    attempts: int


@dataclass
class ClusterResult:
    kind: str
    perf: list[PerfResult] = field(default_factory=list)
    failovers: list[Failover] = field(default_factory=list)


def ctl(endpoints: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ETCDCTL_BIN), f"--endpoints={endpoints}", *args], env={**clean_env(), "ETCDCTL_API": "3"},
                          capture_output=True, text=True, timeout=timeout, check=False)


def cluster_cpu(members: list[Server]) -> float:
    """CPU seconds of the members and their children (petcd's front-ends)."""
    total = 0.0
    for m in members:
        if m.pid is None:
            continue
        pids = [m.pid]
        try:
            pids += [int(p) for p in Path(f"/proc/{m.pid}/task/{m.pid}/children").read_text().split()]
        except OSError:
            pass
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / 100.0
    return total


def check_perf(members: list[Server], load: str) -> PerfResult:
    endpoints = ",".join(m.endpoint for m in members)
    result = PerfResult(kind=members[0].kind, load=load)
    result.note = clear_check_perf_prefix(members[0])
    result.loadavg_before = loadavg()
    cpu0 = cluster_cpu(members)
    t0 = time.monotonic()
    try:
        out = ctl(endpoints, "check", "perf", f"--load={load}", timeout=CHECK_PERF_TIMEOUT)
        result.rc = out.returncode
        parse_check_perf(out.stdout, result)
        if result.verdict == "ERROR":
            result.error = (out.stderr.strip().splitlines() or [f"rc={out.returncode}"])[-1][:300]
    except subprocess.TimeoutExpired:
        result.error = f"check perf did not finish within {CHECK_PERF_TIMEOUT:.0f}s"
    result.wall_s = time.monotonic() - t0
    result.server_cpu_s = cluster_cpu(members) - cpu0
    result.loadavg_after = loadavg()
    return result


def leader_of(members: list[Server]) -> Server:
    out = ctl(",".join(m.endpoint for m in members), "endpoint", "status", "-w", "json")
    for st in json.loads(out.stdout):
        if st["Status"]["leader"] == st["Status"]["header"]["member_id"]:
            return next(m for m in members if m.endpoint in st["Endpoint"])
    raise RuntimeError(f"no leader: {out.stdout} {out.stderr}")


def failover(members: list[Server], round_no: int) -> Failover:
    leader = leader_of(members)
    others = ",".join(m.endpoint for m in members if m is not leader)
    leader.kill9()
    t0 = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        out = ctl(others, "--command-timeout=1s", "--dial-timeout=1s", "put", f"failover-{round_no}", "x", timeout=10)
        if out.returncode == 0:
            break
        if time.monotonic() - t0 > 60:
            raise RuntimeError(f"no write within 60 s after killing {leader.name}: {out.stderr[-300:]}")
    took = time.monotonic() - t0
    leader.start()
    for m in members:
        m.wait_ready()
    return Failover(took, leader.name, attempts)


def run_kind(kind: Kind, root: Path, args: argparse.Namespace) -> ClusterResult:
    group = ServerGroup(root)
    try:
        members = group.start_cluster(kind)
        result = ClusterResult(kind)
        for load in args.loads.split(","):
            r = check_perf(members, load)
            print(f"{kind} check perf {load}: {r.verdict} {r.writes_per_s} w/s slowest {r.slowest_s} "
                  f"stddev {r.stddev_s} cpu {r.server_cpu_s:.1f}s load {r.loadavg_before} -> {r.loadavg_after} "
                  f"{r.error}", flush=True)
            result.perf.append(r)
        for i in range(args.failovers):
            f = failover(members, i)
            print(f"{kind} failover {i}: {f.seconds:.3f}s (killed {f.killed}, {f.attempts} tries)", flush=True)
            result.failovers.append(f)
        return result
    finally:
        group.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", default="m,l")
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--kinds", default="etcd,petcd")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="cluster-compare-") as tmp:
        for kind in args.kinds.split(","):
            results.append(run_kind(kind, Path(tmp) / kind, args))  # type: ignore[arg-type]
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
