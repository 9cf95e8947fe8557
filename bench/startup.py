"""Start-up time: from exec to the first successful put, petcd against real etcd 3.5.1.

Not a test. Three cases, each ``--runs`` times, kinds interleaved so both see a similar machine:

- ``fresh``: a new single member (empty data dir);
- ``restart``: that member stopped with SIGTERM and started again on its data;
- ``cluster``: a follower of a running 3-member cluster stopped with SIGTERM and started again.

The clock starts just before the process is spawned and stops when a Put sent to the member's
client URL succeeds. The client waits for the port to take a TCP connection (probing every 5 ms),
then sends the Put on one channel and sends it again at once if it fails, so the figure is the
member's, not a client's retry timer. Also printed: when the client port first took a connection,
and the CPU seconds the server's processes had used by the first put (on a busy shared machine
that moves much less than the wall time does).

    python bench/startup.py [--runs 5] [--cases fresh,restart,cluster] [--kinds etcd,petcd]
                            [--petcd-args=--client-frontends=0] [--no-bytecode-cache]

petcd runs as an installed package does, with its modules' bytecode cached (in a temporary
PYTHONPYCACHEPREFIX, warmed by one start that is not counted, so no repository gets __pycache__
directories); ``--no-bytecode-cache`` keeps PYTHONDONTWRITEBYTECODE as the environment sets it,
so every start compiles every module from source, as the test machines' processes do.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from petcd.proto.etcdserverpb import rpc_pb2 as pb  # noqa: E402
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc  # noqa: E402
from tests.harness import LOOPBACK, Kind, Server, ServerGroup, server_group  # noqa: E402
from tests.robustness.cluster import followers_of, leader_of  # noqa: E402

DEADLINE = 60.0


@dataclass
class Timing:
    listening: float  # exec to the client port taking a connection
    first_put: float  # exec to the first successful put
    cpu: float  # CPU seconds the member (and its front-ends) had used by then


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its child processes (petcd's front-ends), from /proc."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), 0.2).close()
    except OSError:
        return False
    return True


def time_start(server: Server) -> Timing:
    """Spawn ``server`` and time it until a put through its client URL succeeds."""
    t0 = time.monotonic()
    server.spawn()
    while not _listening(server.client_port):
        if time.monotonic() - t0 > DEADLINE or not server.is_running():
            raise RuntimeError(f"{server!r} never listened\n{server.log_tail()}")
        time.sleep(0.005)
    listening = time.monotonic() - t0
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        while True:
            try:
                kv.Put(pb.PutRequest(key=b"startup", value=b"v"), timeout=DEADLINE, wait_for_ready=True)
                break
            except grpc.RpcError:
                if time.monotonic() - t0 > DEADLINE:
                    raise
                time.sleep(0.005)
    first_put = time.monotonic() - t0
    assert server.pid is not None
    return Timing(listening, first_put, tree_cpu_seconds(server.pid))


def run_case(case: str, kind: Kind, group: ServerGroup, root: Path, extra: tuple[str, ...]) -> Timing:
    if case == "fresh":
        s = Server(kind, root / f"{kind}-fresh-{time.monotonic_ns()}", extra_args=extra, label=kind)
        group.servers.append(s)
        t = time_start(s)
        s.stop()
        return t
    if case == "restart":
        s = Server(kind, root / f"{kind}-restart-{time.monotonic_ns()}", extra_args=extra, label=kind)
        group.servers.append(s)
        s.start()
        s.stop()
        t = time_start(s)
        s.stop()
        return t
    members = group.start_cluster(kind, 3, label=f"{kind}-{time.monotonic_ns()}", extra_args=extra)
    victim = followers_of(members, leader_of(members))[0]
    victim.stop()
    t = time_start(victim)
    for m in members:
        m.stop()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cases", default="fresh,restart,cluster")
    ap.add_argument("--kinds", default="etcd,petcd")
    ap.add_argument("--petcd-args", default="", help="extra flags for petcd, shell-quoted")
    ap.add_argument("--no-bytecode-cache", action="store_true", help="compile every module at every start")
    args = ap.parse_args()
    kinds: list[Kind] = ["etcd" if k == "etcd" else "petcd" for k in args.kinds.split(",")]
    extra = {"etcd": (), "petcd": tuple(shlex.split(args.petcd_args))}
    results: dict[tuple[str, str], list[Timing]] = {}
    with tempfile.TemporaryDirectory(prefix="petcd-startup-") as tmp, server_group(Path(tmp)) as group:
        if not args.no_bytecode_cache:
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
            os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            if "petcd" in kinds:  # warm the cache: member and front-end modules
                run_case("fresh", "petcd", group, Path(tmp), extra["petcd"])
        for case in args.cases.split(","):
            for _ in range(args.runs):
                for kind in kinds:
                    t = run_case(case, kind, group, Path(tmp), extra[kind])
                    results.setdefault((case, kind), []).append(t)
                    print(f"{case:8} {kind:6} listening {t.listening:6.3f} s  first put {t.first_put:6.3f} s"
                          f"  cpu {t.cpu:6.3f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    print("\nload average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"command: python bench/startup.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}\n")
    print("| case | server | first put, median (min-max) | port listening, median | CPU used by then, median |")
    print("|---|---|---:|---:|---:|")
    for (case, name), ts in results.items():
        puts = [t.first_put for t in ts]
        label = name if name == "etcd" else f"petcd {args.petcd_args}".rstrip()
        print(f"| {case} | {label} | {statistics.median(puts):.3f} s ({min(puts):.3f}-{max(puts):.3f}) "
              f"| {statistics.median(t.listening for t in ts):.3f} s | {statistics.median(t.cpu for t in ts):.2f} s |")


if __name__ == "__main__":
    main()
