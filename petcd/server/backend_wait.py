"""Waiting, on the event loop, until the backend may be written again (a defrag swaps its file).

A write while defrag swaps the file would block its thread, and with it the event loop; the
apply path waits here instead, so ticks, heartbeats (the raft driver does not wait for the apply
queue) and client I/O go on. The defrag thread needs the owner thread to commit its open batch
first, so every change the backend reports (a commit asked for, writes unblocked) wakes the wait
to look again.
"""

from __future__ import annotations

import asyncio

from petcd.backend import Backend


async def wait_writable(backend: Backend) -> None:
    """Return once ``backend`` takes writes without blocking (at once when it already does)."""
    if not backend.write_blocked:
        return
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(changed.set)

    remove = backend.listen_write_state(wake)
    try:
        while True:
            changed.clear()
            backend.commit_if_due()
            if not backend.write_blocked:
                return
            await changed.wait()
    finally:
        remove()
