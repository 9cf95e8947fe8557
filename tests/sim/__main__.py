"""CLI: `python -m tests.sim --seeds 200` runs seeds 0..199 of the whole-member simulator;
`--seed N` reproduces one (and shows its trace on failure)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from .members import SimFailure, SimResult, run_seed
from .params import SimParams


def _one(args: tuple[int, float]) -> tuple[int, SimResult | None, str]:
    seed, chaos = args
    logging.getLogger("petcd").setLevel(logging.CRITICAL + 1)
    try:
        return seed, run_seed(seed, chaos), ""
    except SimFailure as e:
        return seed, None, str(e)


def run_many(seeds: list[int], chaos: float, jobs: int) -> Iterator[tuple[int, SimResult | None, str]]:
    work = [(s, chaos) for s in seeds]
    if jobs == 1:
        yield from map(_one, work)
        return
    ex = ProcessPoolExecutor(max_workers=jobs)
    futures = [ex.submit(_one, w) for w in work]
    try:
        for f in futures:
            yield f.result()
    finally:
        # a caller that stops early (--budget) leaves the seeds not yet started unstarted
        ex.shutdown(wait=True, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    ap.add_argument("--seed", type=int, help="run one seed")
    ap.add_argument("--seeds", type=int, default=20, help="run seeds [start, start+N)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--chaos", type=float, default=SimParams.from_seed(0).chaos_seconds,
                    help="virtual seconds of faults per seed")
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    ap.add_argument("--trace", type=int, default=60, help="events shown before a failure")
    ap.add_argument("--budget", type=float, default=0.0, help="stop after this many real seconds")
    args = ap.parse_args(argv)
    SimFailure.show = args.trace
    if args.seed is not None:
        print(SimParams.from_seed(args.seed, args.chaos))
        seed, res, err = _one((args.seed, args.chaos))
        print(res if res is not None else f"FAIL {err}")
        return 0 if res is not None else 1
    t0 = time.monotonic()
    done = failed = 0
    seeds = list(range(args.start, args.start + args.seeds))
    for seed, res, err in run_many(seeds, args.chaos, args.jobs or os.cpu_count() or 1):
        done += 1
        if res is None:
            failed += 1
            print(f"FAIL seed {seed}\n{err}\n", flush=True)
        else:
            print(res, flush=True)
        if args.budget and time.monotonic() - t0 > args.budget:
            print(f"budget of {args.budget:.0f}s reached")
            break
    print(f"{done} seeds, {failed} failed, {time.monotonic() - t0:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
