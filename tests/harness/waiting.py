"""Polling for a condition in tests, with a deadline and a message saying what never happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(cond: Callable[[], bool], what: str = "condition", timeout: float = 10.0) -> None:
    """Await cond() becoming true (checked every 10 ms), AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """The blocking form of ``until``, for tests that drive real processes."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)
