"""Defrag the leader of a 3-member petcd cluster holding a big database, under write load, with
an election timeout shorter than the defrag: no leader change, only etcd's documented errors to
the clients, the followers keep answering writes while the leader's backend is blocked, and the
file shrinks (issue 11).

``python -m tests.robustness.defrag --mb 200`` runs it at full size (tests/robustness/test_defrag.py
runs a small one in CI). It prints what it measured and exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import LOOPBACK, Server, free_ports
from tests.robustness.cluster import leader_of, status

VALUE_BYTES = 512 * 1024
# what etcd 3.5 may answer a write while a member is busy or a leader is missing
# (etcdserver/api/v3rpc/rpctypes); anything else a client sees is a failure of the run
DOCUMENTED = (
    "etcdserver: too many requests",
    "etcdserver: request timed out",
    "etcdserver: leader changed",
    "etcdserver: no leader",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
)


@dataclass
class DefragRun:
    mb: int
    heartbeat_ms: int
    election_ms: int
    defrag_seconds: float = 0.0
    size_before: int = 0
    size_after: int = 0
    file_before: int = 0
    file_after: int = 0
    terms_before: list[int] = field(default_factory=list)
    terms_after: list[int] = field(default_factory=list)
    leader_changes_before: list[int] = field(default_factory=list)
    leader_changes_after: list[int] = field(default_factory=list)
    leader_before: int = 0
    leader_after: int = 0
    writes_ok: int = 0
    # writes answered while the defrag ran, by the member that answered them
    during_leader: int = 0
    during_followers: int = 0
    # ... and by the followers in the middle half of it, clear of where the blocking of the
    # leader's writes starts and ends
    mid_followers: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    log_dir: str = ""

    @property
    def undocumented(self) -> dict[str, int]:
        # keys are "CODE: details"; etcd's texts are the details
        return {e: n for e, n in self.errors.items() if not e.partition(": ")[2].startswith(DOCUMENTED)}

    def failures(self) -> list[str]:
        out = []
        if self.leader_after != self.leader_before:
            out.append(f"leader changed: {self.leader_before:x} -> {self.leader_after:x}")
        if self.terms_after != self.terms_before:
            out.append(f"raft terms moved: {self.terms_before} -> {self.terms_after}")
        if self.leader_changes_after != self.leader_changes_before:
            out.append(f"etcd_server_leader_changes_seen_total moved: {self.leader_changes_before} -> "
                       f"{self.leader_changes_after}")
        if self.undocumented:
            out.append(f"errors etcd does not document: {self.undocumented}")
        if not self.file_after < self.file_before:
            out.append(f"the leader's file did not shrink: {self.file_before} -> {self.file_after} bytes")
        if self.writes_ok == 0:
            out.append("no write succeeded during the defrag")
        if self.mid_followers == 0:
            # the leader's raft goes on while its backend is blocked, so the followers commit and
            # answer writes (a raft driver that waited for the backend would replicate nothing)
            out.append("no write was answered by a follower in the middle of the leader's defrag")
        return out

    def summary(self) -> str:
        return (f"{self.mb} MB, heartbeat {self.heartbeat_ms} ms, election {self.election_ms} ms: defrag of the "
                f"leader took {self.defrag_seconds:.2f} s; db {self.size_before / 1e6:.1f} -> "
                f"{self.size_after / 1e6:.1f} MB (file {self.file_before / 1e6:.1f} -> {self.file_after / 1e6:.1f} MB); "
                f"terms {self.terms_before} -> {self.terms_after}; leader changes seen "
                f"{self.leader_changes_before} -> {self.leader_changes_after}; {self.writes_ok} writes ok "
                f"from 0.5 s before the defrag to {max(1.0, 3 * self.election_ms / 1000):.1f} s after it, "
                f"{self.during_leader + self.during_followers} answered while it ran "
                f"({self.during_leader} by the leader, {self.during_followers} by the followers, "
                f"{self.mid_followers} of these in its middle half); "
                f"errors {dict(self.errors)}")


def _leader_changes(metrics_port: int) -> int:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(r"^etcd_server_leader_changes_seen_total (\S+)$", text, re.M)
    if m is None:
        raise AssertionError("no etcd_server_leader_changes_seen_total in /metrics")
    return int(float(m.group(1)))


def _db_file(server: Server) -> Path:
    found = [p for p in server.data_dir.rglob("*") if p.is_file() and p.name in ("db", "data.mdb")]
    if not found:
        raise AssertionError(f"no backend file under {server.data_dir}")
    return max(found, key=lambda p: p.stat().st_size)


def _fill(server: Server, mb: int) -> None:
    """``mb`` MB of live values, each then overwritten once and the old ones compacted away:
    about half the file is free pages afterwards, for the defrag to drop."""
    n = max(1, mb * 1024 * 1024 // VALUE_BYTES // 2)
    value = os.urandom(VALUE_BYTES)
    with grpc.insecure_channel(server.endpoint, options=[("grpc.max_send_message_length", 4 << 20)]) as ch:
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        for rnd in range(2):
            for i in range(n):
                kv.Put(pb.PutRequest(key=b"big/%06d" % i, value=value[rnd:] + value[:rnd]), timeout=30)
        rev = kv.Range(pb.RangeRequest(key=b"big/", range_end=b"big0", count_only=True), timeout=30).header.revision
        kv.Compact(pb.CompactionRequest(revision=rev, physical=True), timeout=120)


def run(root: Path, mb: int, heartbeat_ms: int, election_ms: int, load_threads: int = 3) -> DefragRun:
    result = DefragRun(mb, heartbeat_ms, election_ms, log_dir=str(root))
    ports = free_ports(9)
    names = ["m1", "m2", "m3"]
    initial = ",".join(f"{n}=http://{LOOPBACK}:{ports[3 * i + 1]}" for i, n in enumerate(names))
    members = [
        Server("petcd", root / n, name=n, label=f"petcd-{n}", client_port=ports[3 * i], peer_port=ports[3 * i + 1],
               initial_cluster=initial, extra_args=(
                   f"--heartbeat-interval={heartbeat_ms}", f"--election-timeout={election_ms}",
                   "--quota-backend-bytes=8589934592", "--client-frontends=0",
                   f"--listen-metrics-urls=http://{LOOPBACK}:{ports[3 * i + 2]}"))
        for i, n in enumerate(names)
    ]
    metrics = {m.name: ports[3 * i + 2] for i, m in enumerate(members)}
    try:
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready(60)
        leader = leader_of(members)
        _fill(leader, mb)
        time.sleep(1.0)  # followers have applied the compaction
        result.leader_before = status(leader).leader
        result.terms_before = [status(m).raftTerm for m in members]
        result.leader_changes_before = [_leader_changes(metrics[m.name]) for m in members]
        result.size_before = status(leader).dbSize
        result.file_before = _db_file(leader).stat().st_size

        stop = threading.Event()
        lock = threading.Lock()
        answered: list[tuple[float, bool]] = []  # (when, by the leader)

        def load(target: Server, idx: int) -> None:
            by_leader = target is leader
            with grpc.insecure_channel(target.endpoint) as ch:
                kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        kv.Put(pb.PutRequest(key=b"load/%d/%d" % (idx, i % 100), value=b"x" * 100), timeout=10)
                        done = time.monotonic()
                        with lock:
                            result.writes_ok += 1
                            answered.append((done, by_leader))
                    except grpc.RpcError as exc:
                        with lock:
                            result.errors[f"{exc.code().name}: {exc.details()}"] += 1  # type: ignore[attr-defined]

        workers = [threading.Thread(target=load, args=(members[i % 3], i), daemon=True) for i in range(load_threads)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        with lock:
            result.writes_ok = 0
            result.errors.clear()
        with grpc.insecure_channel(leader.endpoint) as ch:
            started = time.monotonic()
            pb_grpc.MaintenanceStub(ch).Defragment(pb.DefragmentRequest(), timeout=600)  # type: ignore[no-untyped-call]
            ended = time.monotonic()
            result.defrag_seconds = ended - started
        time.sleep(max(1.0, 3 * election_ms / 1000))  # an election the defrag caused would show by now
        stop.set()
        for w in workers:
            w.join(15)
        with lock:
            during = [(at, by_leader) for at, by_leader in answered if started <= at <= ended]
        quarter = (ended - started) / 4
        result.during_leader = sum(by_leader for _, by_leader in during)
        result.during_followers = len(during) - result.during_leader
        result.mid_followers = sum(1 for at, by_leader in during
                                   if not by_leader and started + quarter <= at <= ended - quarter)
        result.size_after = status(leader).dbSize
        result.file_after = _db_file(leader).stat().st_size
        result.leader_after = status(leader).leader
        result.terms_after = [status(m).raftTerm for m in members]
        result.leader_changes_after = [_leader_changes(metrics[m.name]) for m in members]
        return result
    finally:
        for m in members:
            m.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.robustness.defrag", description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="database size to build, in MB (before compaction)")
    ap.add_argument("--heartbeat-ms", type=int, default=50)
    ap.add_argument("--election-ms", type=int, default=250)
    ap.add_argument("--out", type=Path, default=None)
    ns = ap.parse_args(argv)
    root_dir = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root_dir, os.environ.get("PYTHONPATH", "")) if p)
    out = ns.out or Path(tempfile.mkdtemp(prefix="petcd-defrag-"))
    result = run(out, ns.mb, ns.heartbeat_ms, ns.election_ms)
    print(result.summary(), flush=True)
    failures = result.failures()
    if result.defrag_seconds * 1000 <= ns.election_ms:
        print(f"note: the defrag ({result.defrag_seconds * 1000:.0f} ms) was not longer than the election timeout "
              f"({ns.election_ms} ms); use a bigger --mb or a shorter --election-ms", flush=True)
    for f in failures:
        print(f"FAILED: {f}", flush=True)
    print(f"logs in {out}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
