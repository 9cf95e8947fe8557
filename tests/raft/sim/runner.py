"""Running seeds: one, many (in worker processes), and the kept regression seeds."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .cluster import SimFailure, SimResult, Simulation
from .params import SimParams

REGRESSIONS = Path(__file__).resolve().parent.parent / "sim_regressions.txt"
DEFAULT_CHAOS_TICKS = 500


def run_seed(seed: int, chaos_ticks: int = DEFAULT_CHAOS_TICKS) -> SimResult:
    return Simulation(seed, SimParams.from_seed(seed, chaos_ticks=chaos_ticks)).run()


def regression_seeds(path: Path = REGRESSIONS) -> list[int]:
    """Seeds kept in sim_regressions.txt: one per line, `#` starts a comment."""
    if not path.exists():
        return []
    seeds = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            seeds.append(int(line))
    return seeds


def _one(args: tuple[int, int]) -> tuple[int, SimResult | None, str, float]:
    seed, chaos = args
    t0 = time.perf_counter()
    try:
        return seed, run_seed(seed, chaos), "", time.perf_counter() - t0
    except SimFailure as e:
        return seed, None, str(e), time.perf_counter() - t0


def run_many(
    seeds: Iterable[int], chaos_ticks: int = DEFAULT_CHAOS_TICKS, jobs: int | None = None
) -> Iterator[tuple[int, SimResult | None, str, float]]:
    """Yield (seed, result or None, failure text, seconds) in seed order."""
    work = [(s, chaos_ticks) for s in seeds]
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        yield from map(_one, work)
        return
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        yield from ex.map(_one, work, chunksize=4)
