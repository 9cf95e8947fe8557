"""The quota (NOSPACE) path under load (issue 11): a 3-member cluster with a small
``--quota-backend-bytes``, the suite's concurrent clients (puts of varied sizes, gets, txns,
leases) and watchers, and a filler that overwrites a few keys with big values through every
member until a put is refused for space. Then, each step checked on every member against what
etcd 3.5.1 does (``python -m tests.robustness.quota --kind etcd`` runs the same scenario against
etcd, which is how the expectations below were found):

- alarm raised: a client told NOSPACE finds the alarm listed (AlarmList, Status errors) on every
  member at once; puts (also one that shrinks a value), txns with a put in either branch and lease
  grants are refused with RESOURCE_EXHAUSTED ``etcdserver: mvcc: database space exceeded``; reads
  (linearizable and serializable), deletes, lease revokes and keep-alives work;
- the operator's recovery as etcd's docs give it: get the revision, compact (physically, so the
  defrag finds the pages free), defrag every member, disarm every alarm. Puts stay refused after
  the compaction and after the defrags (the alarm is still raised), every member's database is
  below the quota after its defrag, and once the alarms are disarmed puts, txns and lease grants
  work at once on every member.

Afterwards ``dynamic.run`` checks the rest: linearizable history (a refused put or txn is a
definite failure that changed nothing), no lost acknowledged write, every watcher's events
complete and in order, equal HashKV of every member. The compaction removes the history the
final checks read, so the fault keeps every member's events up to the compaction revision first.

Where petcd differs from etcd 3.5.1 on purpose (each expectation says which applies):
- a txn with no put (reads only, or deletes) is answered while the quota is full; etcd 3.5.1
  refuses it too while its backend is at or above the quota (its front-door check costs every txn;
  fixed in etcd 3.5.7, "non mutating requests pass through quotaKVServer when NOSPACE");
- etcd's apply-time check (quotaApplierV3) applies a write it finds over quota and still answers
  NOSPACE, so there a refused write may have taken effect; petcd never applies a write it refuses
  (``dynamic.run`` checks that, and lets etcd's through as unknown outcomes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Server
from tests.harness.procs import Kind
from tests.robustness.cluster import status
from tests.robustness.dynamic import Live, run
from tests.robustness.suite import RunConfig, RunResult
from tests.robustness.workload import NOSPACE, PREFIX, collect_events, nospace

QUOTA = 4 * 1024 * 1024
# a few pages above what the database takes after the recovery's defrag (measured: 36-48 KiB for
# etcd, 40-80 KiB of file for petcd): the recovery must still leave room for writes, as etcd's does
# (petcd weighing its file size refused the first puts here, petcd/server/quota.py)
TINY_QUOTA = 96 * 1024
HOLD = 1.5  # seconds the alarm stays raised under the clients' load before the recovery
FILL_FOR = 60.0
FILL_KEYS = 4  # the filler overwrites these, so a compaction frees nearly all it wrote
CALL = 10.0
OWN = b"quota/"  # the scenario's own keys, outside the watched prefix
FILL = b"fill/"
MARK = PREFIX + b"mark"  # its deletion is the revision the operator compacts at
REFUSED = f"RESOURCE_EXHAUSTED: {NOSPACE}"
OK = "ok"


def describe(exc: grpc.RpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]


def outcome(call: Callable[[], object]) -> str:
    """``ok``, or the error as ``CODE: details``."""
    try:
        call()
        return OK
    except grpc.RpcError as exc:
        return describe(exc)
    except AssertionError as exc:  # answered, but not as it should have been
        return f"wrong answer: {exc}"


class Stubs:
    """Blocking stubs on one member."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(server.endpoint, options=[("grpc.max_send_message_length", 8 << 20)])
        self.kv = pb_grpc.KVStub(self.channel)  # type: ignore[no-untyped-call]
        self.lease = pb_grpc.LeaseStub(self.channel)  # type: ignore[no-untyped-call]
        self.maintenance = pb_grpc.MaintenanceStub(self.channel)  # type: ignore[no-untyped-call]

    @property
    def name(self) -> str:
        return self.server.name

    def alarms(self) -> set[tuple[int, int]]:
        resp = self.maintenance.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), timeout=CALL)
        return {(a.memberID, a.alarm) for a in resp.alarms}

    def keep_alive(self, lease: int) -> int:
        resp = next(self.lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=lease)]), timeout=CALL))
        return int(resp.TTL)


def _txn(then: Sequence[pb.RequestOp], otherwise: Sequence[pb.RequestOp] = ()) -> pb.TxnRequest:
    """A txn whose compare holds (the scenario's key exists), so ``then`` is the branch taken."""
    cmp = pb.Compare(key=OWN + b"keep", target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0)
    return pb.TxnRequest(compare=[cmp], success=list(then), failure=list(otherwise))


def _put_op(key: bytes, value: bytes) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))


READ_OP = pb.RequestOp(request_range=pb.RangeRequest(key=OWN + b"keep"))
DELETE_OP = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=OWN + b"missing"))


class QuotaFault:
    """The cluster (``start``) and the fault (``fault``) for ``dynamic.run``."""

    def __init__(self, kind: Kind, quota: int) -> None:
        self.kind: Kind = kind
        self.quota = quota
        self.observed: dict[str, dict[str, int]] = {}  # what each check got, counted by answer

    # -- the cluster ------------------------------------------------------------------------------

    def start(self, live: Live) -> list[Server]:
        cfg = live.cfg
        args = [f"--quota-backend-bytes={self.quota}", f"--heartbeat-interval={cfg.heartbeat_ms}",
                f"--election-timeout={cfg.election_ms}"]
        if self.kind == "petcd":
            args.append(f"--client-frontends={cfg.frontends}")
        return live.group.start_cluster(self.kind, 3, label=self.kind, extra_args=args)

    # -- checks -----------------------------------------------------------------------------------

    def expect(self, live: Live, phase: str, s: Stubs, what: str, call: Callable[[], object],
               want: Sequence[str]) -> str:
        got = outcome(call)
        seen = self.observed.setdefault(f"{phase}: {what}", {})
        seen[got] = seen.get(got, 0) + 1
        if got not in want:
            live.problems.append(f"{phase}: {what} through {s.name} answered {got!r}, etcd answers "
                                 f"{' or '.join(repr(w) for w in want)}")
        return got

    def refused(self, live: Live, phase: str, s: Stubs, n: int) -> None:
        """What adds data is refused for space."""
        kv, key = s.kv, OWN + b"new/%d" % n
        self.expect(live, phase, s, "put", lambda: kv.Put(pb.PutRequest(key=key, value=b"v"), timeout=CALL),
                    [REFUSED])
        self.expect(live, phase, s, "put that shrinks a value",
                    lambda: kv.Put(pb.PutRequest(key=OWN + b"keep", value=b""), timeout=CALL), [REFUSED])
        self.expect(live, phase, s, "txn putting in the branch taken",
                    lambda: kv.Txn(_txn([_put_op(key, b"v")]), timeout=CALL), [REFUSED])
        self.expect(live, phase, s, "txn putting only in the branch not taken",
                    lambda: kv.Txn(_txn([READ_OP], [_put_op(key, b"v")]), timeout=CALL), [REFUSED])
        self.expect(live, phase, s, "lease grant",
                    lambda: s.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60), timeout=CALL), [REFUSED])

    def _cost_free_txn(self, live: Live, phase: str, s: Stubs, what: str, req: pb.TxnRequest) -> None:
        """A txn with no put: petcd answers it (as etcd 3.5.7+); etcd 3.5.1 refuses it while
        the member's backend is at or above the quota (its size only grows until a defrag)."""
        before = status(s.server).dbSize
        got = outcome(lambda: s.kv.Txn(req, timeout=CALL))
        after = status(s.server).dbSize
        if self.kind == "petcd" or after < self.quota:
            want = [OK]
        elif before >= self.quota:
            want = [REFUSED]
        else:
            want = [OK, REFUSED]
        seen = self.observed.setdefault(f"{phase}: {what}", {})
        seen[got] = seen.get(got, 0) + 1
        if got not in want:
            live.problems.append(f"{phase}: {what} through {s.name} (dbSize {before} -> {after}, quota "
                                 f"{self.quota}) answered {got!r}, expected {' or '.join(want)}")

    def allowed(self, live: Live, phase: str, s: Stubs, i: int, leases: dict[str, int]) -> None:
        """What reads or frees data still works."""
        kv = s.kv

        def read(serializable: bool) -> None:
            rr = kv.Range(pb.RangeRequest(key=OWN + b"keep", serializable=serializable), timeout=CALL)
            if [k.value for k in rr.kvs] != [b"k"]:
                raise AssertionError(f"read {rr.kvs!r}")

        def delete() -> None:
            dr = kv.DeleteRange(pb.DeleteRangeRequest(key=OWN + b"del/%d" % i), timeout=CALL)
            if dr.deleted != 1:
                raise AssertionError(f"deleted {dr.deleted}")

        def keep_alive() -> None:
            if s.keep_alive(leases["kept"]) <= 0:
                raise AssertionError("the lease is gone")

        self.expect(live, phase, s, "linearizable read", lambda: read(False), [OK])
        self.expect(live, phase, s, "serializable read", lambda: read(True), [OK])
        self.expect(live, phase, s, "delete", delete, [OK])
        self.expect(live, phase, s, "lease revoke",
                    lambda: s.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=leases[s.name]), timeout=CALL), [OK])
        self.expect(live, phase, s, "lease keep-alive", keep_alive, [OK])
        self._cost_free_txn(live, phase, s, "txn with reads only", _txn([READ_OP]))
        self._cost_free_txn(live, phase, s, "txn with a delete only", _txn([DELETE_OP]))

    def alarms_everywhere(self, live: Live, phase: str, stubs: list[Stubs], ids: set[int]) -> set[tuple[int, int]]:
        """Every member lists NOSPACE alarms only, of members of the cluster, in AlarmList and in
        its Status; the union of what they list."""
        union: set[tuple[int, int]] = set()
        for s in stubs:
            listed = s.alarms()
            union |= listed
            errors = list(status(s.server).errors)
            if not listed or {a for _, a in listed} != {pb.NOSPACE} or not {m for m, _ in listed} <= ids:
                live.problems.append(f"{phase}: {s.name} lists alarms {sorted(listed)}, not NOSPACE of members "
                                     f"{sorted(ids)}")
            if not any("alarm:NOSPACE" in e for e in errors):
                live.problems.append(f"{phase}: {s.name}'s status errors {errors} show no NOSPACE alarm")
        return union

    # -- the fault --------------------------------------------------------------------------------

    def setup(self, live: Live, stubs: list[Stubs]) -> dict[str, int]:
        """What the checks under the alarm use: a key to read, one per member to delete, a
        lease per member to revoke and one to keep alive, the mark on the watched prefix."""
        kv = stubs[0].kv
        kv.Put(pb.PutRequest(key=MARK, value=b"m"), timeout=CALL)
        kv.Put(pb.PutRequest(key=OWN + b"keep", value=b"k"), timeout=CALL)
        leases = {"kept": int(stubs[0].lease.LeaseGrant(pb.LeaseGrantRequest(TTL=600), timeout=CALL).ID)}
        for i, s in enumerate(stubs):
            kv.Put(pb.PutRequest(key=OWN + b"del/%d" % i, value=b"d"), timeout=CALL)
            leases[s.name] = int(s.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=600), timeout=CALL).ID)
        return leases

    def fill(self, live: Live, stubs: list[Stubs]) -> Stubs | None:
        """Big values over a few keys through random members until one refuses a put for space;
        that member, or None if the quota was never reached."""
        rnd = live.rnd
        lo, hi = max(1, self.quota // 64), max(2, self.quota // 16)
        puts = written = 0
        errors: dict[str, int] = {}
        end = time.monotonic() + FILL_FOR
        while time.monotonic() < end:
            s = rnd.choice(stubs)
            value = rnd.randbytes(rnd.randint(lo, hi))
            try:
                s.kv.Put(pb.PutRequest(key=FILL + b"%d" % rnd.randrange(FILL_KEYS), value=value), timeout=CALL)
                puts += 1
                written += len(value)
            except grpc.RpcError as exc:
                if nospace(exc):
                    live.note(f"filler: {puts} puts ({written // 1024} KiB) until {s.name} refused one; "
                              f"other errors {errors}")
                    live.stats.update(fill_puts=puts, fill_kib=written // 1024)
                    return s
                text = describe(exc)
                errors[text] = errors.get(text, 0) + 1
                time.sleep(0.05)
        live.problems.append(f"the quota was never reached: {puts} puts ({written // 1024} KiB) in {FILL_FOR:.0f}s, "
                             f"errors {errors}")
        return None

    def under_alarm(self, live: Live, stubs: list[Stubs], refuser: Stubs, leases: dict[str, int],
                    ids: set[int]) -> None:
        phase = "alarm raised"
        # at once: etcd raises the alarm (through raft) before it answers NOSPACE
        union = self.alarms_everywhere(live, phase, stubs, ids)
        live.note(f"alarms listed after {refuser.name}'s refusal: {sorted((f'{m:x}', a) for m, a in union)}")
        t0 = time.monotonic()
        for i, s in enumerate(stubs):
            self.refused(live, phase, s, i)
            self.allowed(live, phase, s, i, leases)
        time.sleep(max(0.0, HOLD - (time.monotonic() - t0)))  # the clients meet the refusals too

    def archive(self, live: Live, stubs: list[Stubs]) -> int:
        """The revision to compact at (the mark's deletion: deletes work under the alarm); every
        member's events through it are archived first by ``fault``."""
        dr = stubs[0].kv.DeleteRange(pb.DeleteRangeRequest(key=MARK), timeout=CALL)
        if dr.deleted != 1:
            raise AssertionError(f"the mark was not there to delete ({dr.deleted})")
        return int(dr.header.revision)

    def recover(self, live: Live, stubs: list[Stubs], rev: int) -> None:
        rnd = live.rnd
        by = rnd.choice(stubs)
        by.kv.Compact(pb.CompactionRequest(revision=rev, physical=True), timeout=60)
        live.note(f"compacted at {rev} through {by.name}")
        for i, s in enumerate(stubs):
            self.expect(live, "compacted", s, "put", lambda s=s, i=i: s.kv.Put(  # type: ignore[misc]
                pb.PutRequest(key=OWN + b"c/%d" % i, value=b"v"), timeout=CALL), [REFUSED])
        sizes: dict[str, tuple[int, int]] = {}
        for s in stubs:
            before = status(s.server).dbSize
            s.maintenance.Defragment(pb.DefragmentRequest(), timeout=120)
            sizes[s.name] = (before, status(s.server).dbSize)
        live.note(f"defragmented every member: dbSize {sizes}")
        live.stats["db_sizes"] = sizes
        for i, s in enumerate(stubs):
            if sizes[s.name][1] >= self.quota:
                live.problems.append(f"{s.name}'s database is {sizes[s.name][1]} bytes after compaction and defrag, "
                                     f"not below the quota ({self.quota})")
            # still refused: the alarm is raised until the operator disarms it
            self.expect(live, "defragmented", s, "put", lambda s=s, i=i: s.kv.Put(  # type: ignore[misc]
                pb.PutRequest(key=OWN + b"d/%d" % i, value=b"v"), timeout=CALL), [REFUSED])
        # etcdctl alarm disarm: every listed alarm, deactivated one by one
        by = rnd.choice(stubs)
        listed = by.alarms()
        for member, alarm in sorted(listed):
            resp = by.maintenance.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE, memberID=member,
                                                        alarm=alarm), timeout=CALL)
            if [(a.memberID, a.alarm) for a in resp.alarms] != [(member, alarm)]:
                live.problems.append(f"disarming {member:x} answered {list(resp.alarms)}")
        live.note(f"disarmed {len(listed)} alarms through {by.name}")
        live.stats["alarms"] = len(listed)
        phase = "disarmed"
        # at once on every member, the others first: one may not have applied the disarm yet, but
        # the put follows it in the log
        for i, s in sorted(enumerate(stubs), key=lambda p: p[1] is by):
            self.expect(live, phase, s, "put", lambda s=s, i=i: s.kv.Put(  # type: ignore[misc]
                pb.PutRequest(key=OWN + b"after/%d" % i, value=b"v"), timeout=CALL), [OK])
            self.expect(live, phase, s, "txn putting", lambda s=s, i=i: s.kv.Txn(  # type: ignore[misc]
                _txn([_put_op(OWN + b"after-txn/%d" % i, b"v")]), timeout=CALL), [OK])
            self.expect(live, phase, s, "lease grant", lambda s=s: s.lease.LeaseGrant(  # type: ignore[misc]
                pb.LeaseGrantRequest(TTL=60), timeout=CALL), [OK])
            listed = s.alarms()
            errors = [e for e in status(s.server).errors if "alarm:" in e]
            if listed or errors:
                live.problems.append(f"{phase}: {s.name} still lists alarms {sorted(listed)}, status {errors}")

    async def fault(self, live: Live) -> None:
        stubs = [Stubs(m) for m in live.members]
        try:
            leases = await asyncio.to_thread(self.setup, live, stubs)
            ids = {(await asyncio.to_thread(status, s.server)).header.member_id for s in stubs}
            refuser = await asyncio.to_thread(self.fill, live, stubs)
            if refuser is None:
                return
            await asyncio.to_thread(self.under_alarm, live, stubs, refuser, leases, ids)
            rev = await asyncio.to_thread(self.archive, live, stubs)
            for s in stubs:
                live.archived[s.server.endpoint] = await collect_events(s.server.endpoint, 1, rev)
            live.archived_through = rev
            await asyncio.to_thread(self.recover, live, stubs, rev)
        finally:
            live.stats["checks"] = {k: dict(v) for k, v in self.observed.items()}
            for s in stubs:
                s.channel.close()


def run_quota(root: Path, cfg: RunConfig, kind: Kind = "petcd", quota: int = QUOTA) -> RunResult:
    q = QuotaFault(kind, quota)
    # with a tiny quota the clients are slowed down, so what they write after the recovery (no
    # compaction frees it) fits: unthrottled, etcd refilled a 96 KiB quota within a second
    pause = 0.02 if quota < 1024 * 1024 else 0.0
    return asyncio.run(run(root, cfg, q.start, q.fault, value_bytes=max(16, quota // 4096),
                           nospace_may_apply=kind == "etcd", pause=pause))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.robustness.quota", description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("petcd", "etcd"), default="petcd")
    ap.add_argument("--quota", type=int, default=QUOTA, help=f"--quota-backend-bytes (tiny: {TINY_QUOTA})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=None)
    ns = ap.parse_args(argv)
    root_dir = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root_dir, os.environ.get("PYTHONPATH", "")) if p)
    out = ns.out or Path(tempfile.mkdtemp(prefix="petcd-quota-"))
    failed = 0
    for i in range(ns.runs):
        seed = ns.seed + i
        result = run_quota(out / f"seed-{seed}-{ns.kind}", RunConfig(seed, "quota", ns.duration), ns.kind, ns.quota)
        print(result.summary(), flush=True)
        failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
