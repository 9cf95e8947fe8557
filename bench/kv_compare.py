"""Side-by-side KV benchmark: petcd against real etcd, same machine, same run.

Not a test. Two phases, each run for every server kind (``--kinds``, default etcd then petcd):

1. ``etcdctl check perf --load=<l>`` for each load in ``--loads`` (default s,m,l), on one server
   per kind with a fresh data dir and default flags plus loopback URLs. The loads are interleaved
   (load s on etcd, load s on petcd, load m on etcd, ...) so both kinds see a similar share of a
   machine whose load changes over time. Each load takes ~60 s per kind. The PASS/FAIL lines are
   parsed (writes/s, slowest request, stddev, overall verdict); the progress bar is dropped.
2. On a *fresh* server per kind (so the figures are not inflated by check perf's history):
   ``--keys`` puts of ``--value-size``-byte values over gRPC with ``--concurrency`` requests in
   flight, then linearizable single-key gets for ``--read-seconds``, then linearizable prefix ranges
   of 1000 keys each for ``--read-seconds``; then the server's RSS (VmRSS / VmHWM from
   /proc/<pid>/status) and the db size from ``etcdctl endpoint status``.

Every response is checked (a get must return its key, a range its 1000 keys), so a server that
answers wrongly cannot score. The server's CPU time (utime + stime) per phase is recorded too, as
CPU time per request is less sensitive than throughput to other work on a shared machine. The
client is Python (grpc.aio) in this process, so etcd's gRPC figures can be client-bound; the
client's own CPU time per phase is printed so that shows.

    python bench/kv_compare.py [--loads s,m,l] [--keys 100000] [--skip-check-perf]
                               [--kinds etcd,petcd] [--json out.json] [--keep]

Servers are stopped by their own PID (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/kv_compare.py` puts bench/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

from petcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.harness.procs import ETCD_BIN, ETCDCTL_BIN, Kind, Server, clean_env  # noqa: E402

CHECK_PERF_TIMEOUT = 200.0  # 60 s of load + up to 30 s of cleanup in etcdctl + slack
KEY_FMT = b"bench/kv/%08d"
RANGE_BLOCK = 1000  # keys per prefix range: KEY_FMT's last three digits vary under one prefix
RANGE_PREFIX_FMT = b"bench/kv/%05d"
CHECK_PERF_PREFIX = "/etcdctl-check-perf/"


# --- machine / process introspection ----------------------------------------------------------------
def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def server_pids(pid: int) -> list[int]:
    """The server process and its children: petcd's client front-end processes count as the
    server (etcd has no children, so this is just its own pid)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            pids.append(int(entry.name))
    return pids


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A /proc/<pid>/status size summed over the server's processes (VmHWM: the sum of each
    process's own peak)."""
    total = None
    for p in server_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    total = (total or 0) + int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def _stat_ticks(pid: int, children: bool) -> int:
    """utime + stime (fields 14-15 of /proc/<pid>/stat), plus cutime + cstime (16-17: children
    that have exited) when ``children``; 0 if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return sum(int(f) for f in fields[11:15 if children else 13])


def proc_own_cpu_seconds(pid: int) -> float:
    """CPU seconds of one process alone (for petcd: the member without its front-ends)."""
    return _stat_ticks(pid, False) / os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds of the server's processes, with those of their children that have exited."""
    return sum(_stat_ticks(p, True) for p in server_pids(pid)) / os.sysconf("SC_CLK_TCK")


def ctl(server: Server, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ETCDCTL_BIN), f"--endpoints={server.endpoint}", *args],
        env={**clean_env(), "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def db_size(server: Server) -> int | None:
    out = ctl(server, "endpoint", "status", "-w", "json", timeout=30)
    if out.returncode != 0:
        return None
    return int(json.loads(out.stdout)[0]["Status"]["dbSize"])


# --- phase 1: etcdctl check perf --------------------------------------------------------------------
@dataclass
class PerfResult:
    kind: str
    load: str
    rc: int = -1
    verdict: str = "ERROR"  # PASS, FAIL, or ERROR when etcdctl gave no verdict
    writes_per_s: int | None = None
    slowest_s: float | None = None
    stddev_s: float | None = None
    checks: list[str] = field(default_factory=list)
    error: str = ""
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    loadavg_before: str = ""
    loadavg_after: str = ""
    note: str = ""


_CHECK = re.compile(r"(?:(?:PASS|FAIL): )?(?:Throughput|Slowest request|Stddev) .*")
_THROUGHPUT = re.compile(r"(\d+) writes/s")
_SLOWEST = re.compile(r"Slowest request took (?:too long: )?([0-9.]+)s")
_STDDEV = re.compile(r"Stddev (?:is|too high:) ([0-9.]+)s")


def parse_check_perf(stdout: str, result: PerfResult) -> None:
    """Fill ``result`` from check perf's output, dropping the progress bar (redrawn with \\r)."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", stdout)]
    # The bar's last frame has no newline, so the first check line can follow it on the same line.
    # etcdctl 3.4 prints the slowest-request and stddev failures without a "FAIL: " prefix.
    for ln in lines:
        if m := _CHECK.search(ln):
            check = m.group(0).strip()
            result.checks.append(check if check.startswith(("PASS:", "FAIL:")) else "FAIL: " + check)
    for ln in result.checks:
        if m := _THROUGHPUT.search(ln):
            result.writes_per_s = int(m.group(1))
        elif m := _SLOWEST.search(ln):
            result.slowest_s = float(m.group(1))
        elif m := _STDDEV.search(ln):
            result.stddev_s = float(m.group(1))
    verdicts = [ln for ln in lines if ln in ("PASS", "FAIL")]
    if verdicts:
        result.verdict = verdicts[-1]


def clear_check_perf_prefix(server: Server) -> str:
    """check perf refuses to run on a non-empty prefix; remove what a failed earlier load left."""
    # etcdctl 3.4 has no --count-only; the json "count" is the total even with --limit.
    out = ctl(
        server, "get", CHECK_PERF_PREFIX, "--prefix", "--keys-only", "--limit=1", "-w", "json", timeout=60
    )
    if out.returncode != 0:
        return f"could not count leftover keys: {out.stderr.strip()}"
    count = int(json.loads(out.stdout).get("count", 0))
    if count == 0:
        return ""
    out = ctl(server, "--command-timeout=120s", "del", CHECK_PERF_PREFIX, "--prefix", timeout=150)
    state = "deleted" if out.returncode == 0 else f"delete failed: {out.stderr.strip()}"
    return f"{count} keys left under {CHECK_PERF_PREFIX} by the previous load, {state}"


def run_check_perf(server: Server, load: str) -> PerfResult:
    assert server.pid is not None
    result = PerfResult(kind=server.kind, load=load)
    result.note = clear_check_perf_prefix(server)
    result.loadavg_before = loadavg()
    cpu0 = proc_cpu_seconds(server.pid)
    t0 = time.monotonic()
    try:
        out = ctl(server, "check", "perf", f"--load={load}", timeout=CHECK_PERF_TIMEOUT)
        result.rc = out.returncode
        parse_check_perf(out.stdout, result)
        if result.verdict == "ERROR" or out.returncode not in (0, 1):
            err = (out.stderr.strip().splitlines() or [f"rc={out.returncode}"])[-1]
            result.error = err[:300]
    except subprocess.TimeoutExpired:
        result.error = f"etcdctl check perf did not finish within {CHECK_PERF_TIMEOUT:.0f}s"
    result.wall_s = time.monotonic() - t0
    result.server_cpu_s = proc_cpu_seconds(server.pid) - cpu0
    result.loadavg_after = loadavg()
    return result


# --- phase 2: gRPC KV load --------------------------------------------------------------------------
@dataclass
class OpStats:
    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    loadavg_before: str = ""
    loadavg_after: str = ""
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass
class KvResult:
    kind: str
    keys: int
    value_size: int
    put: OpStats = field(default_factory=OpStats)
    get: OpStats = field(default_factory=OpStats)
    prefix_range: OpStats = field(default_factory=OpStats)
    idle_rss_kib: int | None = None
    rss_kib: int | None = None
    hwm_kib: int | None = None
    db_size: int | None = None
    keys_loaded: int = 0


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def drive(
    op: Callable[[random.Random, int], Any],
    *,
    concurrency: int,
    total: int | None,
    seconds: float,
    pid: int,
    rng_seed: int,
) -> OpStats:
    """Run ``op`` with ``concurrency`` requests in flight until ``total`` ops or ``seconds`` pass."""
    stats = OpStats(loadavg_before=loadavg())
    latencies: list[float] = []
    next_index = 0
    deadline = time.monotonic() + seconds

    async def worker(wid: int) -> None:
        nonlocal next_index
        rng = random.Random(rng_seed * 1000 + wid)
        while time.monotonic() < deadline:
            if total is not None:
                if next_index >= total:
                    return
                i = next_index
                next_index += 1
            else:
                i = -1
            t = time.perf_counter()
            try:
                await op(rng, i)
            except (grpc.aio.AioRpcError, AssertionError) as exc:
                stats.errors += 1
                if not stats.first_error:
                    stats.first_error = str(exc)[:300]
                if stats.errors > 100:  # a broken server: stop rather than spin
                    return
                continue
            latencies.append(time.perf_counter() - t)

    cpu0, ccpu0 = proc_cpu_seconds(pid), time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    stats.seconds = time.perf_counter() - t0
    stats.server_cpu_s = proc_cpu_seconds(pid) - cpu0
    stats.client_cpu_s = time.process_time() - ccpu0
    stats.loadavg_after = loadavg()
    stats.ops = len(latencies)
    latencies.sort()
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    stats.p50_ms = None if p50 is None else p50 * 1000
    stats.p99_ms = None if p99 is None else p99 * 1000
    return stats


async def kv_phase(server: Server, args: argparse.Namespace) -> KvResult:
    assert server.pid is not None
    pid = server.pid
    result = KvResult(kind=server.kind, keys=args.keys, value_size=args.value_size)
    result.idle_rss_kib = proc_status_kib(pid, "VmRSS")
    value = random.Random(7).randbytes(args.value_size)
    async with grpc.aio.insecure_channel(
        server.endpoint, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 10)

        async def put(_rng: random.Random, i: int) -> None:
            await kv.Put(rpc_pb2.PutRequest(key=KEY_FMT % i, value=value), timeout=30)

        result.put = await drive(put, concurrency=args.concurrency, total=args.keys,
                                 seconds=args.put_timeout, pid=pid, rng_seed=1)
        # Count what is really there: reads below only ask for keys that were acknowledged.
        count = await kv.Range(rpc_pb2.RangeRequest(key=b"bench/kv/", range_end=b"bench/kv0", count_only=True),
                               timeout=60)
        result.keys_loaded = int(count.count)
        loaded = min(result.keys_loaded, result.put.ops) if result.put.errors == 0 else 0
        if loaded == 0 or loaded != args.keys:
            # Partial load: gets and ranges would ask for keys that may be missing, so skip them.
            return finish(server, result)

        async def get(rng: random.Random, _i: int) -> None:
            key = KEY_FMT % rng.randrange(loaded)
            resp = await kv.Range(rpc_pb2.RangeRequest(key=key, serializable=False), timeout=30)
            assert len(resp.kvs) == 1 and resp.kvs[0].key == key, f"get {key!r}: {len(resp.kvs)} kvs"

        result.get = await drive(get, concurrency=args.concurrency, total=None,
                                 seconds=args.read_seconds, pid=pid, rng_seed=2)

        blocks = loaded // RANGE_BLOCK
        if blocks:
            async def prefix_range(rng: random.Random, _i: int) -> None:
                prefix = RANGE_PREFIX_FMT % rng.randrange(blocks)
                resp = await kv.Range(
                    rpc_pb2.RangeRequest(key=prefix, range_end=prefix_end(prefix), serializable=False),
                    timeout=30,
                )
                assert len(resp.kvs) == RANGE_BLOCK, f"range {prefix!r}: {len(resp.kvs)} kvs"

            result.prefix_range = await drive(prefix_range, concurrency=args.range_concurrency, total=None,
                                              seconds=args.read_seconds, pid=pid, rng_seed=3)
    return finish(server, result)


def finish(server: Server, result: KvResult) -> KvResult:
    assert server.pid is not None
    result.rss_kib = proc_status_kib(server.pid, "VmRSS")
    result.hwm_kib = proc_status_kib(server.pid, "VmHWM")
    result.db_size = db_size(server)
    return result


# --- report -----------------------------------------------------------------------------------------
def fmt_num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    """petcd / etcd."""
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def render(
    kinds: Sequence[str],
    perf: dict[tuple[str, str], PerfResult],
    kvs: dict[str, KvResult],
    loads: Sequence[str],
    meta: dict[str, str],
) -> str:
    lines: list[str] = []
    cols = list(kinds)
    has_ratio = "etcd" in kinds and "petcd" in kinds
    head = "| figure | " + " | ".join(cols) + (" | petcd/etcd |" if has_ratio else " |")
    lines += [head, "|" + "---|" * (len(cols) + 1 + int(has_ratio))]

    def row(name: str, values: dict[str, float | None], digits: int = 0, show_ratio: bool = True) -> None:
        cells = [fmt_num(values.get(k), digits) for k in cols]
        r = ratio(values.get("petcd"), values.get("etcd")) if show_ratio else ""
        lines.append(f"| {name} | " + " | ".join(cells) + (f" | {r} |" if has_ratio else " |"))

    def text_row(name: str, values: dict[str, str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values.get(k, "") for k in cols) + (" | |" if has_ratio else " |"))

    for load in loads:
        res = {k: perf[(k, load)] for k in cols if (k, load) in perf}
        if not res:
            continue
        verdict = {}
        for k, p in res.items():
            v = p.verdict + (f" ({p.error})" if p.error else "")
            if p.checks and p.verdict != "ERROR":
                fails = [c.split(":", 1)[1].split(":")[0].strip() for c in p.checks if c.startswith("FAIL")]
                v += f" ({'; '.join(fails)})" if fails else ""
            verdict[k] = v
        text_row(f"check perf `{load}`: result", verdict)
        row(f"check perf `{load}`: writes/s", {k: p.writes_per_s for k, p in res.items()})
        row(f"check perf `{load}`: slowest request (s)", {k: p.slowest_s for k, p in res.items()}, 3)
        row(f"check perf `{load}`: stddev (s)", {k: p.stddev_s for k, p in res.items()}, 3)
        row(f"check perf `{load}`: server CPU s", {k: p.server_cpu_s for k, p in res.items()}, 1)
    if kvs:
        any_kv = next(iter(kvs.values()))
        n, vs = any_kv.keys, any_kv.value_size

        def stat_rows(label: str, get: Callable[[KvResult], OpStats], unit: str, per: int = 1) -> None:
            row(f"{label}: {unit}", {k: get(r).rate * per if get(r).ops else None for k, r in kvs.items()})
            row(f"{label}: p50 latency (ms)", {k: get(r).p50_ms for k, r in kvs.items()}, 1)
            row(f"{label}: p99 latency (ms)", {k: get(r).p99_ms for k, r in kvs.items()}, 1)
            row(f"{label}: server CPU ms per 1000 requests",
                {k: (get(r).server_cpu_s * 1e6 / get(r).ops) if get(r).ops else None for k, r in kvs.items()}, 0)
            row(f"{label}: client CPU share (s CPU / s wall)",
                {k: (get(r).client_cpu_s / get(r).seconds) if get(r).seconds else None for k, r in kvs.items()}, 2,
                show_ratio=False)

        stat_rows(f"put {n:,} keys x {vs} B", lambda r: r.put, "writes/s")
        stat_rows("get 1 key (linearizable)", lambda r: r.get, "reads/s")
        stat_rows(f"range {RANGE_BLOCK} keys (linearizable)", lambda r: r.prefix_range, "ranges/s")
        row(f"range {RANGE_BLOCK} keys: keys/s",
            {k: r.prefix_range.rate * RANGE_BLOCK if r.prefix_range.ops else None for k, r in kvs.items()})
        row("RSS idle, fresh server (MiB)",
            {k: r.idle_rss_kib / 1024 if r.idle_rss_kib else None for k, r in kvs.items()}, 1)
        row(f"RSS after {n:,} keys and the reads (MiB)",
            {k: r.rss_kib / 1024 if r.rss_kib else None for k, r in kvs.items()}, 1)
        row("peak RSS, VmHWM (MiB)", {k: r.hwm_kib / 1024 if r.hwm_kib else None for k, r in kvs.items()}, 1)
        row("db size, endpoint status (MiB)",
            {k: r.db_size / 2**20 if r.db_size else None for k, r in kvs.items()}, 1)
        errs = {k: r for k, r in kvs.items() if r.put.errors or r.get.errors or r.prefix_range.errors
                or r.keys_loaded != r.keys}
        for k, r in errs.items():
            lines.append("")
            lines.append(
                f"{k}: {r.keys_loaded:,} of {r.keys:,} keys loaded; errors put {r.put.errors} "
                f"get {r.get.errors} range {r.prefix_range.errors}; first: "
                f"{r.put.first_error or r.get.first_error or r.prefix_range.first_error}"
            )
    notes = [p for p in perf.values() if p.note]
    for p in notes:
        lines += ["", f"{p.kind} before load `{p.load}`: {p.note}"]
    lines += ["", "Load average (1, 5, 15 min) around each measurement:", ""]
    lines += ["| measurement | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for load in loads:
        cells = [f"{perf[(k, load)].loadavg_before} → {perf[(k, load)].loadavg_after}"
                 if (k, load) in perf else "" for k in cols]
        if any(cells):
            lines.append(f"| check perf `{load}` | " + " | ".join(cells) + " |")
    for label, get in (("put", lambda r: r.put), ("get", lambda r: r.get), ("range", lambda r: r.prefix_range)):
        cells = [f"{get(kvs[k]).loadavg_before} → {get(kvs[k]).loadavg_after}"
                 if k in kvs and get(kvs[k]).loadavg_before else "" for k in cols]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(run_header(meta) + lines) + "\n"


# --- the run's description, shared with watch_compare.py ----------------------------------------
def parse_kinds(ap: argparse.ArgumentParser, text: str) -> list[Kind]:
    kinds: list[Kind] = []
    for k in text.split(","):
        if k not in ("etcd", "petcd"):
            ap.error(f"--kinds: unknown kind {k!r}")
        kinds.append("etcd" if k == "etcd" else "petcd")
    return kinds


def run_meta(script: str, argv: Sequence[str] | None) -> dict[str, str]:
    """What a report says about the run: date, machine, versions, command (load at the end is
    added by the caller)."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
                   f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "loadavg_start": loadavg(),
        "etcd_version": version_of([str(ETCD_BIN), "--version"]),
        "petcd_version": petcd_version(),
        "command": "python " + shlex.join([script, *(sys.argv[1:] if argv is None else argv)]),
    }


def run_header(meta: dict[str, str]) -> list[str]:
    return [
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- load average: {meta['loadavg_start']} at start, {meta['loadavg_end']} at end"
        + (" (shared machine: other work was running)" if meta.get("shared") == "yes" else ""),
        f"- etcd: {meta['etcd_version']}; petcd: {meta['petcd_version']}",
        f"- command: `{meta['command']}`",
        "",
    ]


# --- main -------------------------------------------------------------------------------------------
def version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else "unknown"


def petcd_version() -> str:
    """The commit, flagged when the working tree under petcd/ differs from it (what really ran)."""
    head = version_of(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    try:
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "petcd"],
                               capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        dirty = ""
    return f"git {head}" + (" + uncommitted changes under petcd/" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", default="s,m,l", help="check perf loads, comma separated (s,m,l,xl)")
    ap.add_argument("--kinds", default="etcd,petcd", help="servers to run, comma separated")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight for puts and gets")
    ap.add_argument("--range-concurrency", type=int, default=16, help="prefix ranges in flight")
    ap.add_argument("--read-seconds", type=float, default=10.0)
    ap.add_argument("--put-timeout", type=float, default=300.0, help="stop loading keys after this long")
    ap.add_argument("--skip-check-perf", action="store_true")
    ap.add_argument("--skip-kv", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--workdir", type=Path, help="where data dirs go (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and server logs")
    args = ap.parse_args(argv)

    kinds = parse_kinds(ap, args.kinds)
    loads = [x for x in args.loads.split(",") if x]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="petcd-kvbench-"))
    root.mkdir(parents=True, exist_ok=True)
    meta = run_meta("bench/kv_compare.py", argv)
    start_load = load1()
    perf: dict[tuple[str, str], PerfResult] = {}
    kvs: dict[str, KvResult] = {}
    servers: list[Server] = []
    try:
        if not args.skip_check_perf and loads:
            by_kind = {}
            for k in kinds:
                s = Server(k, root / f"perf-{k}", label=f"perf-{k}")
                servers.append(s)
                by_kind[k] = s.start()
            for load in loads:
                for k in kinds:
                    print(f"[{time.strftime('%H:%M:%S')}] check perf --load={load} on {k} ...",
                          file=sys.stderr, flush=True)
                    res = run_check_perf(by_kind[k], load)
                    perf[(k, load)] = res
                    print(f"    {res.verdict} {res.writes_per_s} writes/s slowest {res.slowest_s} "
                          f"stddev {res.stddev_s} {res.error}", file=sys.stderr, flush=True)
            for s in by_kind.values():
                s.stop()
        if not args.skip_kv:
            for k in kinds:
                print(f"[{time.strftime('%H:%M:%S')}] kv load on {k} ...", file=sys.stderr, flush=True)
                s = Server(k, root / f"kv-{k}", label=f"kv-{k}")
                servers.append(s)
                s.start()
                kvs[k] = asyncio.run(kv_phase(s, args))
                r = kvs[k]
                print(f"    put {r.put.rate:,.0f}/s get {r.get.rate:,.0f}/s range {r.prefix_range.rate:,.1f}/s "
                      f"rss {r.rss_kib} KiB", file=sys.stderr, flush=True)
                s.stop()
    finally:
        for s in servers:
            s.stop()
        meta["loadavg_end"] = loadavg()
        meta["shared"] = "yes" if max(start_load, load1()) > 1.0 else "no"
        report = render(kinds, perf, kvs, loads, meta)
        print(report)
        if args.json:
            args.json.write_text(json.dumps({
                "meta": meta,
                "check_perf": [asdict(p) for p in perf.values()],
                "kv": {k: asdict(r) for k, r in kvs.items()},
            }, indent=2))
        if args.keep:
            print(f"data dirs and logs kept in {root}", file=sys.stderr)
        elif args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
