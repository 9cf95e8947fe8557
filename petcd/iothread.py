"""One thread that runs blocking storage work (WAL writes, fsync, snapshot files) in order."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class IoThread:
    """One thread that runs blocking storage work in submission order (WAL writes must stay in
    order), awaited from the loop.

    Leaner than ThreadPoolExecutor + run_in_executor, whose futures, work items and callback
    chains cost more than the rest of handling a small Ready: here a job is one queue put, and
    its result comes back with one call_soon_threadsafe. A job whose awaiting future was
    cancelled before it started is skipped, as the executor would. The thread is a daemon
    started with the first job; stop() lets queued jobs finish, joins it, and refuses new jobs.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any],
                                            Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._stopped:
            raise RuntimeError("the I/O thread is stopped")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put((loop, fut, fn, args))
        return fut

    def stop(self) -> None:
        self._stopped = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _main(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, fut, fn, args = job
            if fut.cancelled():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting task
                _deliver(loop, _set_exception, fut, exc)
            else:
                _deliver(loop, _set_result, fut, result)


def _deliver(loop: asyncio.AbstractEventLoop, cb: Callable[[asyncio.Future[Any], Any], None],
             fut: asyncio.Future[Any], value: Any) -> None:
    try:
        loop.call_soon_threadsafe(cb, fut, value)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
