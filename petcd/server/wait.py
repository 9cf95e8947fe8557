"""Wait for the apply loop: a caller registers an id, the apply loop triggers it."""

from __future__ import annotations

import asyncio
from typing import Any


class Wait:
    def __init__(self) -> None:
        self._futures: dict[int, asyncio.Future[Any]] = {}

    def register(self, req_id: int) -> asyncio.Future[Any]:
        if req_id in self._futures:
            raise ValueError(f"duplicate wait id {req_id:x}")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[req_id] = fut
        return fut

    def trigger(self, req_id: int, result: Any) -> None:
        fut = self._futures.pop(req_id, None)
        if fut is not None and not fut.done():
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def cancel(self, req_id: int) -> None:
        self._futures.pop(req_id, None)

    def is_registered(self, req_id: int) -> bool:
        return req_id in self._futures

    def fail_all(self, exc: BaseException) -> None:
        futures, self._futures = self._futures, {}
        for fut in futures.values():
            if not fut.done():
                fut.set_exception(exc)
