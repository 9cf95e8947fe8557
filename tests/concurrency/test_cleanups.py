"""Cleanups: the undo of a cancelled Lock or Campaign runs to the end."""

from __future__ import annotations

import asyncio

import pytest

from petcd.server.concurrency import Cleanups, prefix_end, session_key


def test_guarded_write_cancelled_midway_is_undone_once_applied() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        applied = asyncio.Event()
        cleanups = Cleanups()

        async def write() -> str:
            await applied.wait()
            log.append("applied")
            return "result"

        async def undo(result: str) -> None:
            log.append(f"undo {result}")

        caller = asyncio.create_task(cleanups.guarded(write(), undo))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert log == []  # the write is still under way: nothing to undo yet
        applied.set()
        await cleanups.wait_idle()
        return log

    assert asyncio.run(main()) == ["applied", "undo result"]


def test_guarded_failed_write_needs_no_undo_and_uncancelled_returns() -> None:
    async def main() -> tuple[list[str], str]:
        log: list[str] = []
        cleanups = Cleanups()

        async def failing() -> str:
            await asyncio.sleep(0.01)
            raise RuntimeError("refused")

        async def ok() -> str:
            return "fine"

        def undo(result: str) -> None:
            log.append("undo")

        caller = asyncio.create_task(cleanups.guarded(failing(), undo))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await cleanups.wait_idle()
        return log, await cleanups.guarded(ok(), undo)

    assert asyncio.run(main()) == ([], "fine")


def test_run_finishes_even_if_the_caller_is_cancelled_again() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        cleanups = Cleanups()

        async def slow_undo() -> None:
            await asyncio.sleep(0.05)
            log.append("deleted")

        caller = asyncio.create_task(cleanups.run(slow_undo))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await cleanups.wait_idle()
        return log

    assert asyncio.run(main()) == ["deleted"]


def test_keys_as_clientv3_makes_them() -> None:
    assert session_key(b"lock/", 0x694D77AA9E9F2B0B) == b"lock/694d77aa9e9f2b0b"
    assert session_key(b"/", -5) == b"/-5"  # Go's %x of a negative int64
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"
