"""CLI: `python -m tests.raft.sim --seeds 10000` runs seeds 0..9999; `--seed N` reproduces one."""

from __future__ import annotations

import argparse
import sys
import time

from .cluster import SimFailure
from .params import SimParams
from .runner import DEFAULT_CHAOS_TICKS, regression_seeds, run_many, run_seed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.raft.sim", description=__doc__)
    ap.add_argument("--seed", type=int, help="run one seed and print its trace tail and result")
    ap.add_argument("--seeds", type=int, default=100, help="run seeds [start, start+N)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    ap.add_argument("--ticks", type=int, default=DEFAULT_CHAOS_TICKS, help="ticks of chaos per seed")
    ap.add_argument("--regressions", action="store_true", help="also run the kept regression seeds")
    ap.add_argument("--trace", type=int, default=40, help="events shown before a failure")
    ap.add_argument("--budget", type=float, default=0.0, help="stop starting new seeds after this many seconds")
    args = ap.parse_args(argv)

    SimFailure.show = args.trace
    if args.seed is not None:
        print(SimParams.from_seed(args.seed, chaos_ticks=args.ticks))
        try:
            print(run_seed(args.seed, args.ticks))
        except SimFailure as e:
            print(f"FAIL {e}")
            return 1
        return 0

    seeds = list(range(args.start, args.start + args.seeds))
    if args.regressions:
        seeds = regression_seeds() + seeds
    t0 = time.monotonic()
    done = failed = 0
    for seed, res, err, secs in run_many(seeds, args.ticks, args.jobs or None):
        done += 1
        if res is None:
            failed += 1
            print(f"FAIL seed {seed} ({secs:.2f}s)\n{err}\n", flush=True)
        if done % 500 == 0:
            print(f"... {done}/{len(seeds)} seeds, {failed} failed, {time.monotonic() - t0:.0f}s", flush=True)
        if args.budget and time.monotonic() - t0 > args.budget:
            print(f"budget of {args.budget:.0f}s reached", flush=True)
            break
    elapsed = time.monotonic() - t0
    print(f"{done} seeds, {failed} failed, {elapsed:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
