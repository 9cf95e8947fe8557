"""Faults on real member processes: kill -9, SIGSTOP/SIGCONT, restarts, partitions.

Every fault is an async function of a :class:`Faults` (blocking process work runs in a thread so
the clients on the event loop keep going) that ends with the cluster whole again: killed members
restarted, paused ones continued, partitions healed. Signals go to the members' own PIDs only.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.harness import Server
from tests.robustness.cluster import followers_of, leader_of
from tests.robustness.proxy import PeerProxies


@dataclass
class Faults:
    members: list[Server]
    election_timeout: float  # seconds
    rnd: random.Random
    proxies: PeerProxies | None = None
    log: list[str] = field(default_factory=list)
    _t0: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self._t0:7.2f}s {what}")

    async def _leader(self) -> Server:
        return await asyncio.to_thread(leader_of, self.members)

    async def _restart(self, m: Server) -> None:
        self.note(f"restarting {m.name}")
        await asyncio.to_thread(m.restart)
        self.note(f"{m.name} is back")

    async def kill_leader(self) -> None:
        m = await self._leader()
        await self._kill_and_restart(m, "leader")

    async def kill_follower(self) -> None:
        m = self.rnd.choice(followers_of(self.members, await self._leader()))
        await self._kill_and_restart(m, "follower")

    async def _kill_and_restart(self, m: Server, role: str) -> None:
        self.note(f"kill -9 {role} {m.name} (pid {m.pid})")
        await asyncio.to_thread(m.kill9)
        await asyncio.sleep(self.rnd.uniform(0.2, 2.0))
        await self._restart(m)

    async def pause_leader(self) -> None:
        m = await self._leader()
        pid = m.pid
        assert pid is not None
        pause = self.election_timeout * self.rnd.uniform(2.0, 4.0)
        self.note(f"SIGSTOP leader {m.name} (pid {pid}) for {pause:.1f}s")
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(pause)
        finally:
            os.kill(pid, signal.SIGCONT)
            self.note(f"SIGCONT {m.name}")

    async def restart_all(self) -> None:
        self.note("kill -9 every member")
        for m in self.members:
            await asyncio.to_thread(m.kill9)
        await asyncio.sleep(self.rnd.uniform(0.2, 1.0))
        self.note("starting every member")

        def start_all() -> None:
            for m in self.members:
                m.spawn()
            for m in self.members:
                m.wait_ready()

        await asyncio.to_thread(start_all)
        self.note("every member is back")

    async def partition_leader(self) -> None:
        """Cut the leader off from its peers (both directions) for a while, then heal."""
        if self.proxies is None:
            raise RuntimeError("partition_leader needs the cluster started behind peer proxies")
        m = await self._leader()
        cut = self.election_timeout * self.rnd.uniform(2.0, 5.0)
        self.note(f"partition leader {m.name} from its peers for {cut:.1f}s")
        self.proxies.isolate(m.name)
        try:
            await asyncio.sleep(cut)
        finally:
            self.proxies.heal()
            self.note("partition healed")

    async def partition_follower(self) -> None:
        if self.proxies is None:
            raise RuntimeError("partition_follower needs the cluster started behind peer proxies")
        m = self.rnd.choice(followers_of(self.members, await self._leader()))
        cut = self.election_timeout * self.rnd.uniform(2.0, 5.0)
        self.note(f"partition follower {m.name} from its peers for {cut:.1f}s")
        self.proxies.isolate(m.name)
        try:
            await asyncio.sleep(cut)
        finally:
            self.proxies.heal()
            self.note("partition healed")

    def heal(self) -> None:
        """Whatever a fault left behind (it was cancelled, or failed): every member running."""
        if self.proxies is not None:
            self.proxies.heal()
        for m in self.members:
            if m.pid is not None and m.is_running():
                os.kill(m.pid, signal.SIGCONT)
        for m in self.members:
            if not m.is_running():
                self.note(f"healing: starting {m.name}")
                m.spawn()
        for m in self.members:
            m.wait_ready()


async def mixed(f: Faults) -> None:
    """Three faults of any kind, one after another."""
    for _ in range(3):
        name = f.rnd.choice(sorted(set(SCENARIOS) - {"mixed"}))
        await SCENARIOS[name](f)
        await asyncio.sleep(f.rnd.uniform(0.0, 1.5))


SCENARIOS: dict[str, Callable[[Faults], Awaitable[None]]] = {
    "kill-leader": Faults.kill_leader,
    "kill-follower": Faults.kill_follower,
    "pause-leader": Faults.pause_leader,
    "restart-all": Faults.restart_all,
    "partition-leader": Faults.partition_leader,
    "partition-follower": Faults.partition_follower,
    "mixed": mixed,
}
NEEDS_PROXIES = frozenset({"partition-leader", "partition-follower", "mixed"})
