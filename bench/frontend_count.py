"""How petcd's write throughput and CPU split depend on its number of client front-ends.

Not a test. For each count in ``--counts`` (default 0,1,2,3; 0 = the member serves clients
itself), and for ``--repeat`` rounds (counts interleaved within a round, so each sees a similar
share of a machine whose load changes), starts a fresh single-member petcd with
``--client-frontends=N`` and runs ``etcdctl check perf --load=<load>`` against it. Prints writes/s
and the CPU time of the member process, of its front-ends together and of etcdctl (the client),
each per write, so it shows where the CPU goes and which count the machine favours.

    python bench/frontend_count.py [--counts 0,1,2,3] [--load l] [--repeat 1]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "bench"):  # the repo for tests.harness, bench/ for kv_compare
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from kv_compare import loadavg, proc_cpu_seconds, proc_own_cpu_seconds, run_check_perf  # noqa: E402

from tests.harness.procs import Server  # noqa: E402


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Row:
    count: int
    verdict: str
    writes_per_s: int | None
    slowest_s: float | None
    writes: int
    member_cpu_s: float
    frontends_cpu_s: float
    client_cpu_s: float
    loadavg: str


def measure(root: Path, count: int, load: str, round_: int) -> Row:
    server = Server("petcd", root / f"n{count}-r{round_}", label=f"fe{count}",
                    extra_args=[f"--client-frontends={count}"])
    server.start()
    try:
        assert server.pid is not None
        pid = server.pid
        member0, all0, client0 = proc_own_cpu_seconds(pid), proc_cpu_seconds(pid), children_cpu_seconds()
        res = run_check_perf(server, load)
        member = proc_own_cpu_seconds(pid) - member0
        total = proc_cpu_seconds(pid) - all0
        client = children_cpu_seconds() - client0
    finally:
        server.stop()
    writes = int((res.writes_per_s or 0) * 60)  # check perf runs for 60 s
    return Row(count, res.verdict, res.writes_per_s, res.slowest_s, writes, member, total - member, client,
               res.loadavg_after)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="0,1,2,3")
    ap.add_argument("--load", default="l")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    root = Path(tempfile.mkdtemp(prefix="petcd-fecount-"))
    rows: list[Row] = []
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average at start: {loadavg()}")
    print(f"- command: `python bench/frontend_count.py --counts {args.counts} --load {args.load} "
          f"--repeat {args.repeat}`\n")
    try:
        for r in range(args.repeat):
            for c in counts:
                print(f"[{time.strftime('%H:%M:%S')}] --client-frontends={c} round {r + 1}", file=sys.stderr,
                      flush=True)
                rows.append(measure(root, c, args.load, r))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"| front-ends | check perf `{args.load}` | writes/s | slowest (s) | member CPU µs/write | "
          "front-ends CPU µs/write | etcdctl CPU µs/write | load average after |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        per = 1e6 / row.writes if row.writes else 0.0
        print(f"| {row.count} | {row.verdict} | {row.writes_per_s or 0:,} | {row.slowest_s} | "
              f"{row.member_cpu_s * per:.0f} | {row.frontends_cpu_s * per:.0f} | {row.client_cpu_s * per:.0f} | "
              f"{row.loadavg} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
