"""The apply queue between the raft driver and the server's apply (etcd's FIFO scheduler between
``raftNode`` and ``applyAll``).

How it works. The driver pushes each Ready that has something to apply (a snapshot, committed
entries) and goes on at once: persisting, sending messages, advancing raft. One worker task takes
the pushed Readys in order and awaits the apply callback for each, so the state machine sees
entries in log order while a slow apply (the backend blocked by a defrag, a snapshot install)
never holds up heartbeats. Where raft needs the apply done before it advances (a snapshot to
install, conf changes) the driver waits until the queue is ``drained()`` and applies that Ready
itself (``apply_inline``), as it did before there was a queue. A failed
apply is handed to ``on_fail`` once; the worker then stops and drops what is left, as the member
is stopping.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from petcd.raft import Ready

ApplyFn = Callable[[Ready], Awaitable[None]]
FailFn = Callable[[BaseException], None]

__all__ = ["ApplyFn", "ApplyQueue", "FailFn"]


class ApplyQueue:
    def __init__(self, apply: ApplyFn, on_fail: FailFn) -> None:
        self._apply = apply
        self._on_fail = on_fail
        self._items: deque[Ready] = deque()
        self._wake = asyncio.Event()
        # set while nothing is queued or being applied (and once the queue is closed)
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def idle(self) -> bool:
        return self._idle.is_set()

    def __len__(self) -> int:
        """Readys pushed and not yet taken by the worker."""
        return len(self._items)

    def push(self, rd: Ready) -> None:
        if self._closed:
            return
        self._items.append(rd)
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Return once everything pushed so far is applied (or the queue is closed)."""
        await self._idle.wait()

    async def apply_inline(self, rd: Ready) -> None:
        """Apply ``rd`` in the caller (the driver), the queue being drained: for what raft must
        see applied before it advances (conf changes, snapshot installs). A failure is raised to
        the caller."""
        if self._closed:
            return
        if not self._idle.is_set():
            raise RuntimeError("apply_inline with Readys still queued")
        await self._apply(rd)

    def close(self) -> None:
        """Apply nothing more (the member is stopping); wakes whoever waits in drained()."""
        self._closed = True
        self._items.clear()
        self._idle.set()
        self._wake.set()

    async def run(self) -> None:
        """The worker: apply pushed Readys in order until closed or an apply fails."""
        items = self._items
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while items and not self._closed:
                rd = items[0]
                try:
                    await self._apply(rd)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # a failed apply: the member must stop
                    self.close()
                    self._on_fail(exc)
                    return
                # popped only now: the Ready counts as queued until it is applied
                if items:
                    items.popleft()
            if not items:
                self._idle.set()
