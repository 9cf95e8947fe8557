"""The task that drives a WatchableStore's catch-up and victim retries on the event loop.

It must run on the thread that applies writes (the server's event loop): catching up reads the
backend there, where pending batched writes are visible and no write can slip in between the
read and moving the watcher to the synced set. Each ``sync_step()`` does a bounded amount of work
(one window of history for a bounded number of watchers), and the task yields to the loop between
steps, so a watcher replaying a long history never stalls writes or other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from petcd.clock import Clock, wait_for
from petcd.mvcc.watchable import WatchableStore

log = logging.getLogger("petcd.mvcc.watch")

# etcd retries victims every 10 ms and syncs unsynced watchers every 100 ms; here both also run
# as soon as there is work (a new watcher from the past, a stream with room again)
IDLE_INTERVAL = 0.1


class WatchSyncer:
    def __init__(self, ws: WatchableStore, clock: Clock, idle_interval: float = IDLE_INTERVAL) -> None:
        self.ws = ws
        self.clock = clock
        self.idle_interval = idle_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        ws.on_work = self._wake.set

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watch-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        ws = self.ws
        while True:
            if not ws.has_work():
                await self._wake.wait()
            else:
                # work that cannot progress waits for a client to read (drain wakes us) or for
                # the idle interval
                with contextlib.suppress(TimeoutError):
                    await wait_for(self.clock, self._wake.wait(), self.idle_interval)
            self._wake.clear()
            try:
                while ws.sync_step():
                    await asyncio.sleep(0)  # a yield to the loop between steps, not a wait
            except Exception:  # a failed read must not kill every watch; retry on the next wake
                log.exception("watch sync failed")
