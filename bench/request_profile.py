"""Where petcd's server CPU per request goes: py-spy profiles of the member and its front-ends.

Not a test. Starts one petcd (fresh data dir, default flags: a member and its client front-ends),
writes one 256-byte key, then for each workload runs petcd-benchmark twice against it:

1. unprofiled, to measure each process's CPU per request (utime + stime from /proc);
2. with ``py-spy record --native`` attached to every server process for the whole run, to split
   each process's samples into the parts of the request path (``CATEGORIES``).

Each process's CPU per request (run 1) is then divided in the proportions of its samples (run 2),
so the table is in microseconds of CPU per request. py-spy pauses a process to unwind its native
stack, so run 2 is slower; only its proportions are used.

    python bench/request_profile.py [--total 20000] [--workloads put,range-s] [--rate 250] [--keep DIR]

The workloads are those of bench/benchmark_tool.py (``--conns 8 --clients 64``, one client
process per CPU).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shlex
import signal
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

from tests.harness.procs import Server, clean_env  # noqa: E402

KEY = "bench-tool/key"
COMMON = ["--conns", "8", "--clients", "64"]


def workloads(total: int) -> dict[str, list[str]]:
    return {
        "put": [*COMMON, "put", "--total", str(total), "--val-size", "256", "--key-space-size", str(total),
                "--sequential-keys"],
        "range-l": [*COMMON, "range", KEY, "--total", str(total), "--consistency", "l"],
        "range-s": [*COMMON, "range", KEY, "--total", str(total), "--consistency", "s"],
    }


LOOP = "event loop (uvloop, asyncio)"
# A sample goes to the category of its innermost frame that matches one of these (the first
# match in this order); samples of a thread that waits (epoll, a lock, the GIL) are left out.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("petcd front-end and link framing (frontend/process, link, wire)", re.compile(r"\(petcd/frontend/(process|link|wire|methods)\.py")),
    ("member link + dispatch (frontend/dispatch, wire)", re.compile(r"\(petcd/frontend/dispatch\.py")),
    ("member api handlers (petcd/api)", re.compile(r"\(petcd/api/")),
    ("member metrics (petcd/http/grpcstats)", re.compile(r"\(petcd/http/grpcstats\.py")),
    ("member server (petcd/server: propose, wait, apply, read index)", re.compile(r"\(petcd/server/")),
    ("raft", re.compile(r"\(petcd/raft/")),
    ("storage (mvcc, backend/LMDB, wal, lease, auth)", re.compile(r"\(petcd/(mvcc|backend|wal|lease|auth)/|lmdb|mdb\.c")),
    ("petcd other", re.compile(r"\(petcd/")),
    ("Python GC", re.compile(r"gcmodule\.c|gc_collect")),
    ("protobuf (upb)", re.compile(r"\(google/protobuf|_upb|_message\.abi3")),
    ("grpcio Cython/Python layer", re.compile(r"\(grpc/|^CYTHON$")),
    ("gRPC C core", re.compile(r"^CORE$")),
    (LOOP, re.compile(r"\(asyncio/|uvloop|\(loop\.c|\(stream\.c|\(linux\.c|\(core\.c|"
                                                 r"_asynciomodule\.c|\(handles\.c|\(unix\.c|\(<frozen abc>")),
]
OTHER = "other (interpreter, libc, kernel calls)"
# frames of a thread that is not running: waiting in epoll, on a lock or condition, for the GIL
_IDLE = re.compile(r"^(epoll_wait|epoll_pwait2?|poll|ppoll|select|pselect|pthread_cond_wait|pthread_cond_timedwait|"
                   r"sem_wait|sem_timedwait|nanosleep|clock_nanosleep|PyThread_acquire_lock_timed|take_gil|"
                   r"drop_gil|accept4?|pause) ")
# cygrpc is stripped: its Cython code is told from gRPC's C core by address (the two ranges of the
# .so whose code calls the Python C API, found with objdump for grpcio 1.85.4)
_CYTHON_RANGES = ((0x125000, 0x153800), (0x857000, 0x951000))
_CYGRPC = re.compile(r"^0x([0-9a-f]+) \(grpc/_cython/cygrpc")


def _frame(frame: str, base: int) -> str:
    m = _CYGRPC.match(frame)
    if m is None:
        return frame
    off = int(m.group(1), 16) - base
    return "CYTHON" if any(lo <= off < hi for lo, hi in _CYTHON_RANGES) else "CORE"


def classify(frames: list[str], base: int) -> str | None:
    """The category of one sample (root first), None for a thread that waits."""
    leaf = frames[-1]
    if leaf.startswith("syscall (libc") and len(frames) > 1 and "cygrpc" in frames[-2]:
        return None  # gRPC's futex waits
    if any(_IDLE.match(f) for f in frames[-4:]):
        return None
    found = None
    for i in range(len(frames) - 1, -1, -1):  # innermost first
        f = _frame(frames[i], base)
        for name, rx in CATEGORIES:
            if rx.search(f):
                found = name
                break
        if found is not None:
            break
    if found is None:
        return OTHER
    if found != LOOP:
        return found
    # the event loop's work is charged to whoever asked for it: gRPC's Cython layer (its
    # tasks, futures, asyncio.wait) or petcd's code (the link's futures and writes)
    for frame in reversed(frames[:i]):
        f = _frame(frame, base)
        if f in ("CYTHON", "CORE") or "(grpc/" in f:
            return LOOP + ", for gRPC"
        if "(petcd/" in f:
            return LOOP + ", for petcd" if "main (petcd/" not in f else LOOP + ", its own (I/O, callbacks)"
    return LOOP + ", its own (I/O, callbacks)"


def cygrpc_base(pid: int) -> int:
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5].endswith(".so") and "cygrpc" in parts[5] and int(parts[2], 16) == 0:
            return int(parts[0].split("-")[0], 16)
    return 0


def split(raw: Path, base: int) -> tuple[collections.Counter[str], int]:
    """Samples per category in a py-spy raw (collapsed) file, and the number of running samples."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        cat = classify(stack.split(";"), base)
        if cat is not None:
            counts[cat] += int(n)
            total += int(n)
    return counts, total


def role(pid: int, member: int) -> str:
    if pid == member:
        return "member"
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for a in cmd:
        if a.startswith(b"--index="):
            return f"front-end {a[8:].decode()}"
    return f"child {pid}"


def bench(server: Server, argv: list[str]) -> tuple[str, float]:
    cmd = [sys.executable, "-m", "petcd.benchmark", "--endpoints", server.endpoint, *argv]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    m = re.search(r"Requests/sec:\t([\d.]+)", out.stdout)
    return (m.group(1) if m else "?"), time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total", type=int, default=20000)
    ap.add_argument("--workloads", default="put,range-s")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--keep", help="directory for the raw py-spy files (default: a temporary one)")
    ap.add_argument("--json")
    ap.add_argument("--resplit", help="a --json file of an earlier run: split its --keep files again, run nothing")
    args = ap.parse_args()
    if args.resplit:
        results = json.loads(Path(args.resplit).read_text())
        for row in results:
            for name, proc in row["processes"].items():
                raw = Path(args.keep) / f"{row['workload']}-{name.replace(' ', '')}.txt"
                counts, total = split(raw, int(row["cygrpc_base"][name], 16))
                us = float(proc["cpu_us_per_request"])
                proc["split_us"] = {k: us * v / total for k, v in counts.most_common()} if total else {}
        report(results)
        return 0
    chosen = args.workloads.split(",")
    loads = workloads(args.total)
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="petcd-reqprof-") as tmp:
        outdir = Path(args.keep or tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        server = Server("petcd", Path(tmp) / "petcd").start()
        try:
            subprocess.run([sys.executable, "-m", "petcd.ctl", "--endpoints", server.endpoint, "put", KEY, "v" * 256],
                           check=True, capture_output=True, env=clean_env())
            assert server.pid is not None
            pids = server_pids(server.pid)
            roles = {p: role(p, server.pid) for p in pids}
            bases = {p: cygrpc_base(p) for p in pids}
            print(f"# start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {loadavg()}, "
                  f"processes {roles}", flush=True)
            for name in chosen:
                argv = loads[name]
                cpu0 = {p: proc_own_cpu_seconds(p) for p in pids}
                la0 = loadavg()
                rps, wall = bench(server, argv)
                cpu = {p: proc_own_cpu_seconds(p) - cpu0[p] for p in pids}
                spies = {}
                for p in pids:
                    raw = outdir / f"{name}-{roles[p].replace(' ', '')}.txt"
                    spies[p] = (raw, subprocess.Popen(
                        ["py-spy", "record", "--native", "--format", "raw", "--rate", str(args.rate),
                         "--pid", str(p), "--output", str(raw)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(1.0)  # py-spy attaches
                prof_rps, _ = bench(server, argv)
                for _, spy in spies.values():
                    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                for _, spy in spies.values():
                    spy.wait(60)
                row: dict[str, object] = {"workload": name, "rps": rps, "profiled_rps": prof_rps, "wall_s": wall,
                                          "load_before": la0, "load_after": loadavg(), "processes": {},
                                          "cygrpc_base": {roles[p]: hex(bases[p]) for p in pids}}
                for p in pids:
                    counts, total = split(spies[p][0], bases[p])
                    us = cpu[p] / args.total * 1e6
                    row["processes"][roles[p]] = {  # type: ignore[index]
                        "cpu_us_per_request": us, "samples": total,
                        "split_us": {k: us * v / total for k, v in counts.most_common()} if total else {},
                    }
                results.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.stop()
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def _group(cat: str) -> str:
    if cat in ("gRPC C core", "grpcio Cython/Python layer", LOOP + ", for gRPC"):
        return "gRPC (C core, Cython layer, event-loop work it asks for)"
    if cat.startswith(("petcd", "member", "storage", "raft", "protobuf")) or cat == LOOP + ", for petcd":
        return "petcd (its code, protobuf, event-loop work it asks for)"
    return "neither (event loop's own I/O and callbacks, GC, interpreter)"


def report(results: list[dict[str, object]]) -> None:
    for row in results:
        procs: dict[str, dict[str, object]] = row["processes"]  # type: ignore[assignment]
        total_us = sum(float(v["cpu_us_per_request"]) for v in procs.values())  # type: ignore[arg-type]
        print(f"\n### {row['workload']}: {row['rps']} requests/s unprofiled ({row['profiled_rps']} profiled), "
              f"server CPU {total_us:.0f} µs per request, load {row['load_before']} → {row['load_after']}\n")
        cats = sorted({c for v in procs.values() for c in v["split_us"]})  # type: ignore[attr-defined]
        names = sorted(procs)
        print("| part | " + " | ".join(f"{n} µs/req" for n in names) + " | all µs/req |")
        print("|---|" + "---:|" * (len(names) + 1))
        for c in sorted(cats, key=lambda c: -sum(procs[n]["split_us"].get(c, 0.0) for n in names)):  # type: ignore[attr-defined]
            vals = [procs[n]["split_us"].get(c, 0.0) for n in names]  # type: ignore[attr-defined]
            print(f"| {c} | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {sum(vals):.0f} |")
        vals = [float(procs[n]["cpu_us_per_request"]) for n in names]  # type: ignore[arg-type]
        print("| **total** | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {sum(vals):.0f} |")
        groups: dict[str, list[float]] = {}
        for c in cats:
            g = groups.setdefault(_group(c), [0.0] * len(names))
            for i, n in enumerate(names):
                g[i] += procs[n]["split_us"].get(c, 0.0)  # type: ignore[attr-defined]
        for g, vals in sorted(groups.items()):
            print(f"| *{g}* | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {sum(vals):.0f} |")


if __name__ == "__main__":
    sys.exit(main())
