"""Where a 3-member petcd spends its CPU under ``etcdctl check perf`` (issue 11's target).

Not a test. Starts a fresh 3-member petcd on loopback (default flags, plus ``--petcd-args``), runs
``etcdctl check perf --load=<load>`` with all three client URLs as endpoints, and prints the
verdict, each server process's CPU seconds during the run (members and their front-ends), etcdctl's
own CPU seconds, and the server CPU per acknowledged write. With ``--spy`` it also attaches
``py-spy record --native`` to every server process for ``--spy-seconds`` from 15 s into the run
and splits each process's CPU into the parts of bench/request_profile.py (py-spy slows the run:
read only its proportions). Each run gets its own cluster, so ``--runs 2 --petcd-args=...``
compares settings.

    python bench/cluster_profile.py [--load m] [--runs 1] [--petcd-args="--client-frontends=0"]
                                    [--spy] [--keep DIR]
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

from kv_compare import loadavg, proc_own_cpu_seconds, server_pids  # noqa: E402
from request_profile import cygrpc_base, split  # noqa: E402

from tests.harness.procs import ETCDCTL_BIN, ServerGroup, clean_env  # noqa: E402


def run_once(load: str, extra: list[str], spy: bool, spy_seconds: int, keep: Path, run: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="petcd-clprof-") as tmp:
        group = ServerGroup(Path(tmp))
        try:
            members = group.start_cluster("petcd", 3, extra_args=extra)
            eps = ",".join(m.endpoint for m in members)
            names: dict[int, str] = {}
            for m in members:
                assert m.pid is not None
                for pid in server_pids(m.pid):
                    names[pid] = f"{m.name} member" if pid == m.pid else f"{m.name} front-end {pid}"
            cpu0 = {pid: proc_own_cpu_seconds(pid) for pid in names}
            la0 = loadavg()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            perf = subprocess.Popen([str(ETCDCTL_BIN), f"--endpoints={eps}", "check", "perf", f"--load={load}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
            spies: dict[int, tuple[Path, subprocess.Popen[bytes]]] = {}
            bases: dict[int, int] = {}
            if spy:
                time.sleep(15)
                for pid, name in names.items():
                    raw = keep / f"run{run}-{name.replace(' ', '-')}.txt"
                    bases[pid] = cygrpc_base(pid)
                    spies[pid] = (raw, subprocess.Popen(
                        ["py-spy", "record", "--native", "--format", "raw", "--rate", "50", "--duration",
                         str(spy_seconds), "--pid", str(pid), "--output", str(raw)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            out, _ = perf.communicate(timeout=600)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            for _, proc in spies.values():
                proc.wait(120)
            cpu = {names[pid]: proc_own_cpu_seconds(pid) - cpu0[pid] for pid in names}
        finally:
            group.close()
    lines = [ln.strip() for ln in out.splitlines() if re.match(r"^\s*(PASS|FAIL|Slowest|Stddev|Throughput)", ln)]
    m = re.search(r"(\d+) writes/s", out)
    writes = int(m.group(1)) * 60 if m else 0
    total = sum(cpu.values())
    row: dict[str, object] = {
        "petcd_args": extra, "verdict": lines, "writes_per_s": writes // 60, "load_before": la0,
        "load_after": loadavg(), "server_cpu_s": round(total, 1),
        "etcdctl_cpu_s": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 1),
        "server_cpu_ms_per_write": round(total / writes * 1e3, 3) if writes else None,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
    }
    if spy and writes:
        parts: dict[str, dict[str, float]] = {}
        for pid, (raw, _) in spies.items():
            counts, samples = split(raw, bases[pid])
            us = cpu[names[pid]] / writes * 1e6
            parts[names[pid]] = {k: round(us * v / samples, 1) for k, v in counts.most_common()} if samples else {}
        row["split_us_per_write"] = parts
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load", default="m")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--petcd-args", default="", help="extra petcd flags, one string")
    ap.add_argument("--spy", action="store_true", help="profile every server process with py-spy")
    ap.add_argument("--spy-seconds", type=int, default=30)
    ap.add_argument("--keep", help="directory for py-spy's raw files (default: a temporary one)")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="petcd-clprof-spy-") as tmp:
        keep = Path(args.keep or tmp)
        keep.mkdir(parents=True, exist_ok=True)
        for run in range(args.runs):
            row = run_once(args.load, shlex.split(args.petcd_args), args.spy, args.spy_seconds, keep, run)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
