"""A member that meets a fatal failure stops, with that failure as its fatal error (so the
process exits as failed): a backend commit that fails while it stops or on the commit timer (a
full disk), a task that dies of a bug. Whoever waits for ``stopped`` (the command's main) wakes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import lmdb
import pytest

from petcd.clock import ManualClock
from petcd.peer.member import build
from petcd.server.etcdserver import EtcdServer
from tests.server.test_virtual_time import advance_until, settings

FULL_DISK = lmdb.Error("mdb_txn_commit: Input/output error")  # what a full tmpfs gives LMDB


async def leading_member(tmp_path: Path, clock: ManualClock) -> EtcdServer:
    srv = (await build(settings(tmp_path), clock)).server
    await srv.start()
    await advance_until(clock, lambda: srv.leader == srv.member_id, "the member to lead", 30)
    return srv


def test_a_failed_final_commit_still_stops_the_member(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        srv = await leading_member(tmp_path, clock)

        def commit_on_a_full_disk() -> None:
            raise FULL_DISK

        # the storage fault a full tmpfs gives LMDB, injected at the one call that meets it
        srv.backend.force_commit = commit_on_a_full_disk  # type: ignore[method-assign]
        await asyncio.wait_for(srv.stop(), 10)
        assert srv.stopped.is_set()
        assert srv.fatal is FULL_DISK

    asyncio.run(main())


def test_a_failed_periodic_commit_stops_the_member(tmp_path: Path) -> None:
    """The batch a failed commit loses is gone from the file: the member must not go on serving
    and writing as if it held those writes (it stops; its WAL replays them at restart)."""

    async def main() -> None:
        clock = ManualClock()
        srv = await leading_member(tmp_path, clock)

        def commit_on_a_full_disk() -> bool:
            raise FULL_DISK

        # the timer's commit, with no client write in flight (so the apply path never meets it)
        srv.backend.commit_if_due = commit_on_a_full_disk  # type: ignore[method-assign]
        await advance_until(clock, srv.stopped.is_set, "the member to stop", 30)
        assert srv.fatal is FULL_DISK

    asyncio.run(main())



@pytest.mark.parametrize("target", ["ticker", "task"])
def test_a_member_task_that_dies_of_a_bug_stops_the_member(tmp_path: Path, target: str) -> None:
    """A duty that ends with an unhandled error (the raft ticker's, any member task's) must not
    leave a member that runs on without it."""

    async def main() -> None:
        clock = ManualClock()
        srv = await leading_member(tmp_path, clock)
        bug = RuntimeError(f"a bug in the {target}")

        def tick() -> None:
            raise bug

        async def duty() -> None:
            await clock.sleep(0.2)
            raise bug

        if target == "ticker":
            srv.raft._node.tick = tick  # type: ignore[method-assign]
        else:
            srv._spawn(duty(), "a duty")
        await advance_until(clock, srv.stopped.is_set, "the member to stop", 30)
        assert srv.fatal is bug

    asyncio.run(main())
