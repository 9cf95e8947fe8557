"""CPU cost of petcd's own write path, without gRPC: EtcdServer.put called directly.

    python bench/server_path.py [--puts 20000] [--concurrency 256] [--profile]

Starts a single-member EtcdServer in-process on a temp data dir and times N puts issued
by C concurrent tasks (WAL fsync included). Prints puts/s and process CPU per put.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time

from petcd.clock import LoopClock
from petcd.config import settings_from_flags
from petcd.peer.member import build as build_member
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.server.main import tune_gc


async def run(puts: int, concurrency: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        settings = settings_from_flags(["--name=bench", f"--data-dir={d}",
                                        "--initial-advertise-peer-urls=http://127.0.0.1:1"])
        srv = (await build_member(settings, LoopClock())).server
        await srv.start()
        while srv.leader == 0:
            await asyncio.sleep(0.01)
        value = b"v" * 256
        queue = iter(range(puts))

        async def worker() -> None:
            for i in queue:
                await srv.put(pb.PutRequest(key=b"k%08d" % i, value=value))

        wall0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        await srv.stop()
        return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--puts", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--default-gc", action="store_true", help="keep Python's GC thresholds (petcd tunes them)")
    ns = ap.parse_args()
    import uvloop

    if not ns.default_gc:
        tune_gc()

    if ns.profile:
        prof = cProfile.Profile()
        prof.enable()
    wall, cpu = uvloop.run(run(ns.puts, ns.concurrency))
    if ns.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    print(f"{ns.puts} puts, {ns.concurrency} in flight: {ns.puts / wall:,.0f} puts/s, "
          f"{cpu / ns.puts * 1e6:.0f} us CPU per put")


if __name__ == "__main__":
    main()
