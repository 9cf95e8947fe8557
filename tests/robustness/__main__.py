"""``python -m tests.robustness --runs N --seed S``: robustness runs with random faults.

Run i uses seed S+i; its scenario is drawn from that seed unless ``--scenario`` names one. Every
run prints one line; a failing one prints its seed, its history file and how to rerun it, and
the command exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.robustness.diskfull import run_diskfull, why_not
from tests.robustness.faults import SCENARIOS
from tests.robustness.membership import run_membership
from tests.robustness.quota import TINY_QUOTA, run_quota
from tests.robustness.suite import RunConfig, RunResult, run_sync

# scenarios whose fault changes the cluster itself (tests/robustness/dynamic.py); random runs
# draw from these too
DYNAMIC: dict[str, Callable[[Path, RunConfig], RunResult]] = {
    "membership": run_membership,
    "membership-any": lambda root, cfg: run_membership(root, cfg, leader_too=True),
    "disk-full": run_diskfull,
    "quota": run_quota,
    "quota-tiny": lambda root, cfg: run_quota(root, cfg, quota=TINY_QUOTA),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.robustness", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    ap.add_argument("--scenario", choices=sorted({*SCENARIOS, *DYNAMIC}), default=None)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of client load per run")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--frontends", type=int, default=0, help="--client-frontends of the members")
    ap.add_argument("--heartbeat-ms", type=int, default=100)
    ap.add_argument("--election-ms", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="where run directories go")
    ns = ap.parse_args(argv)
    # child processes must import this tree, as under pytest (tests/conftest.py does the same)
    root_dir = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root_dir, os.environ.get("PYTHONPATH", "")) if p)
    first = ns.seed if ns.seed is not None else random.SystemRandom().randrange(1 << 31)
    out = ns.out or Path(tempfile.mkdtemp(prefix="petcd-robustness-"))
    failed = 0
    for i in range(ns.runs):
        seed = first + i
        scenario = ns.scenario or random.Random(seed).choice(sorted({*SCENARIOS, *DYNAMIC}))
        cfg = RunConfig(seed, scenario, ns.duration, ns.clients, ns.keys, ns.frontends, ns.heartbeat_ms,
                        ns.election_ms)
        if scenario == "disk-full" and (reason := why_not()) is not None:
            print(f"skipped seed={seed} scenario=disk-full: {reason}", flush=True)
            continue
        runner = DYNAMIC.get(scenario, run_sync)
        result = runner(out / f"seed-{seed}-{scenario}", cfg)
        print(result.summary(), flush=True)
        if not result.ok:
            failed += 1
            print(f"  rerun: python -m tests.robustness --seed {seed} --scenario {scenario}"
                  f" --duration {ns.duration} --clients {ns.clients} --keys {ns.keys} --frontends {ns.frontends}"
                  f" --heartbeat-ms {ns.heartbeat_ms} --election-ms {ns.election_ms}", flush=True)
            print(f"  recheck the history: python -m tests.robustness.linearizability {result.history_path}",
                  flush=True)
    print(f"{ns.runs - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
