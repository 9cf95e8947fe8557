"""petcd vs etcd 3.5.1 measured with petcd-benchmark, same machine, same run.

Not a test. Starts one real etcd 3.5.1 and one petcd (fresh data dirs, default flags, loopback
URLs), then runs each petcd-benchmark command against etcd and against petcd in turn, for each
``--procs`` value (client processes), interleaved so both kinds see a similar share of a machine
whose load moves:

    put:   --conns 8 --clients 64 put --total N --val-size 256 --key-space-size N --sequential-keys
    range: --conns 8 --clients 64 range bench-tool/key --total N --consistency l | s

The summaries are parsed (Requests/sec, Average, 50/99 % latency); the server's CPU seconds per run
(all its processes: petcd's member and its client front-ends), the client's (the benchmark process
and its workers, start-up included) and the load average around every run are recorded. Prints a markdown table and the exact commands.

    python bench/benchmark_tool.py [--total 20000] [--procs 1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

from kv_compare import loadavg, proc_cpu_seconds  # noqa: E402

from tests.harness.procs import Server, clean_env  # noqa: E402

KEY = "bench-tool/key"


def workloads(total: int) -> dict[str, list[str]]:
    common = ["--conns", "8", "--clients", "64"]
    return {
        "put 256 B": [*common, "put", "--total", str(total), "--val-size", "256", "--key-space-size", str(total),
                      "--sequential-keys"],
        "range linearizable": [*common, "range", KEY, "--total", str(total), "--consistency", "l"],
        "range serializable": [*common, "range", KEY, "--total", str(total), "--consistency", "s"],
    }


def figure(text: str, label: str) -> float:
    m = re.search(rf"  {re.escape(label)}:\t([\d.]+)", text)
    if not m:
        raise RuntimeError(f"no {label} in:\n{text}")
    return float(m.group(1))


def pct(text: str, p: str) -> float:
    m = re.search(rf"  {re.escape(p)}% in ([\d.]+) secs", text)
    return float(m.group(1)) if m else float("nan")


def run_one(server: Server, argv: list[str]) -> dict[str, object]:
    cmd = [sys.executable, "-m", "petcd.benchmark", "--endpoints", server.endpoint, *argv]
    assert server.pid is not None
    la0, cpu0, t0 = loadavg(), proc_cpu_seconds(server.pid), time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=600, check=False)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = time.monotonic() - t0, proc_cpu_seconds(server.pid) - cpu0
    # the benchmark process and its worker processes (waited for): the client's CPU, start-up included
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    n = int(argv[argv.index("--total") + 1])
    return {
        "rps": figure(out.stdout, "Requests/sec"), "avg_ms": figure(out.stdout, "Average") * 1e3,
        "p50_ms": pct(out.stdout, "50") * 1e3, "p99_ms": pct(out.stdout, "99") * 1e3,
        "server_cpu_ms_per_1000": cpu / n * 1e6,
        "client_cpu_ms_per_1000": client_cpu / n * 1e6, "wall_s": wall, "load_before": la0, "load_after": loadavg(),
        "command": "petcd-benchmark " + shlex.join(cmd[3:]).replace(server.endpoint, "<endpoint>"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total", type=int, default=20000)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--json")
    args = ap.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="petcd-benchtool-") as tmp:
        servers = {k: Server(k, Path(tmp) / k).start() for k in ("etcd", "petcd")}  # type: ignore[arg-type]
        try:
            for s in servers.values():
                subprocess.run([sys.executable, "-m", "petcd.ctl", "--endpoints", s.endpoint, "put", KEY, "v" * 256],
                               check=True, capture_output=True, env=clean_env())
            print(f"# start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {loadavg()}", flush=True)
            for name, argv in workloads(args.total).items():
                for n in procs:
                    for kind, s in servers.items():
                        r = run_one(s, ["--procs", str(n), *argv])
                        r.update(kind=kind, workload=name, procs=n)
                        rows.append(r)
                        print(json.dumps(r), flush=True)
        finally:
            for s in servers.values():
                s.stop()
    print(f"# end {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {loadavg()}")
    print("\n| workload | --procs | kind | requests/s | average ms | p50 ms | p99 ms | server CPU ms / 1000 req | "
          "client CPU ms / 1000 req | load before → after |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['procs']} | {r['kind']} | {r['rps']:,.0f} | {r['avg_ms']:.1f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_cpu_ms_per_1000']:,.0f} | "
              f"{r['client_cpu_ms_per_1000']:,.0f} | "
              f"{r['load_before']} → {r['load_after']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
