"""Disk full under load (issue 11): one member's data dir is a small tmpfs, mounted in a private
mount namespace (``unshare --mount``, as root) that a holder process keeps alive; the member runs in
it (``nsenter --mount``, which execs, so the member keeps its own PID). While clients run, a
ballast file leaves the tmpfs nearly full and big values are written through the other members
until the full member fails. As etcd: its writes fail (it stops on a failed WAL or backend
write, or answers with documented errors), the other members keep answering writes, and after the
ballast is removed and the member restarted it serves every acknowledged write (``dynamic.run``
checks that, and the rest).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import LOOPBACK, Server, free_ports
from tests.robustness.cluster import leader_of
from tests.robustness.dynamic import Live, run
from tests.robustness.suite import RunConfig, RunResult, _member_args

TMPFS_MB = 100  # the WAL preallocates a 64 MB segment; the rest is the backend's and the ballast's
FREE_MB = 3  # what the ballast leaves
FILL_VALUE = 128 * 1024
FILL_PREFIX = b"fill/"


def why_not() -> str | None:
    """Why the scenario cannot run here, or None."""
    for tool in ("unshare", "nsenter", "mount", "fallocate"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "mounting a tmpfs in a private mount namespace needs root"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs \"$d\" && umount \"$d\"; rc=$?; "
                            "rmdir \"$d\"; exit $rc"], capture_output=True, timeout=20)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.decode(errors='replace').strip()}"
    return None


class MountNamespace:
    """A private mount namespace held by a sleeping process (the tmpfs lives as long as it)."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "3600"],
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        # unshare execs sleep once the namespace is made; until then nsenter would join ours
        mine = os.readlink("/proc/self/ns/mnt")
        end = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/mnt") == mine:
            if time.monotonic() > end or self.holder.poll() is not None:
                raise RuntimeError("unshare --mount did not make a namespace")
            time.sleep(0.01)

    def prefix(self) -> list[str]:
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--"]

    def run(self, *argv: str) -> str:
        out = subprocess.run([*self.prefix(), *argv], capture_output=True, timeout=30, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout.decode()

    def free_bytes(self, path: Path) -> int:
        return int(self.run("df", "-B1", "--output=avail", str(path)).split()[-1])

    def close(self) -> None:
        if self.holder.poll() is None:
            os.kill(self.holder.pid, signal.SIGKILL)
            self.holder.wait()


class NsServer(Server):
    """A member that runs inside ``ns`` (its data dir is the tmpfs mounted there)."""

    def __init__(self, *args: object, ns: MountNamespace, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.ns = ns

    def command(self) -> list[str]:
        return [*self.ns.prefix(), *super().command()]


class DiskFull:
    def __init__(self) -> None:
        self.ns = MountNamespace()
        self.full: Server | None = None

    def start(self, live: Live) -> list[Server]:
        live.cleanups.append(self.ns.close)
        ports = free_ports(6)
        names = ["m1", "m2", "m3"]
        initial = ",".join(f"{n}=http://{LOOPBACK}:{ports[2 * i + 1]}" for i, n in enumerate(names))
        members: list[Server] = []
        for i, n in enumerate(names):
            kw = dict(name=n, extra_args=_member_args(live.cfg), label=f"petcd-{n}", client_port=ports[2 * i],
                      peer_port=ports[2 * i + 1], initial_cluster=initial)
            if n == "m3":
                m: Server = NsServer("petcd", live.root / n, ns=self.ns, **kw)
                m.data_dir.mkdir(mode=0o700)
                self.ns.run("mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(m.data_dir))
                self.full = m
            else:
                m = Server("petcd", live.root / n, **kw)  # type: ignore[arg-type]
            members.append(m)
        live.group.servers.extend(members)
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready(60)
        return members

    def fill(self, live: Live) -> None:
        full = self.full
        assert full is not None
        ballast = full.data_dir / "ballast"
        free = self.ns.free_bytes(full.data_dir)
        self.ns.run("fallocate", "-l", str(max(0, free - FREE_MB * 1024 * 1024)), str(ballast))
        live.note(f"{full.name}: ballast leaves {self.ns.free_bytes(full.data_dir) // 1024} KiB free "
                  f"(of {TMPFS_MB} MiB)")
        others = [m for m in live.members if m is not full]
        value = os.urandom(FILL_VALUE)
        errors: dict[str, int] = {}
        written = 0
        with grpc.insecure_channel(others[0].endpoint) as c0, grpc.insecure_channel(others[1].endpoint) as c1:
            kvs = [pb_grpc.KVStub(c0), pb_grpc.KVStub(c1)]  # type: ignore[no-untyped-call]
            end = time.monotonic() + 10
            i = 0
            # until the member has failed (or three times the free space is written), then 20 more,
            # so the survivors are seen taking writes; no more, or the member's catch-up at its
            # restart would not fit the space freed
            after = 0
            budget = 3 * FREE_MB * 1024 * 1024 // FILL_VALUE
            while after < 20 and time.monotonic() < end:
                if written >= budget and full.is_running():
                    time.sleep(0.2)  # enough is written for the disk to fill: wait for the member to fail
                    continue
                i += 1
                try:
                    kvs[i % 2].Put(pb.PutRequest(key=FILL_PREFIX + b"%05d" % i, value=value), timeout=5)
                    written += 1
                    if not full.is_running():
                        after += 1
                except grpc.RpcError as exc:
                    text = f"{exc.code().name}: {exc.details()}"
                    errors[text] = errors.get(text, 0) + 1
                    time.sleep(0.05)
        live.note(f"filler: {written} puts of {FILL_VALUE // 1024} KiB through the others, errors {errors}")
        if full.is_running():
            live.problems.append(f"{full.name} still runs with its disk full ({written} big puts later); "
                                 f"its log ends:\n{full.log_tail(10)}")
        else:
            rc = full._proc.returncode if full._proc is not None else None
            tail = [ln for ln in full.log_tail(60).splitlines() if " CRITICAL " in ln or " ERROR " in ln]
            live.note(f"{full.name} exited rc={rc}: {tail[-2:]}")
            live.stats["full_member_exit"] = rc
            # it must stop on the storage error itself: a member that went on after losing a
            # batch reads revisions its file never got (once seen: a failed timer commit)
            corrupt = [ln for ln in full.log_path.read_text(errors="replace").splitlines()
                       if "CorruptError" in ln or "missing in backend" in ln]
            if corrupt:
                live.problems.append(f"{full.name} met a corrupt store before it stopped: {corrupt[0]}")
        if after == 0:
            live.problems.append("no write through the other members succeeded after the full member failed")
        live.stats.update(fill_puts=written, fill_errors=errors)

    def recover(self, live: Live) -> None:
        full = self.full
        assert full is not None
        self.ns.run("rm", "-f", str(full.data_dir / "ballast"))
        live.note(f"ballast removed: {self.ns.free_bytes(full.data_dir) // (1024 * 1024)} MiB free; restarting "
                  f"{full.name}")
        full.stop()
        full.start(60)
        leader_of(live.members)
        live.note(f"{full.name} is back")

    async def fault(self, live: Live) -> None:
        await asyncio.to_thread(self.fill, live)
        await asyncio.to_thread(self.recover, live)


def run_diskfull(root: Path, cfg: RunConfig) -> RunResult:
    d = DiskFull()
    try:
        return asyncio.run(run(root, cfg, d.start, d.fault))
    finally:
        d.ns.close()
