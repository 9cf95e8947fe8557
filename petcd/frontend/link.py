"""A front-end's end of its link to the member: forward a unary call, await its answer."""

from __future__ import annotations

import asyncio
from typing import cast

from petcd.frontend import wire
from petcd.frontend.methods import DIGEST


class LinkClosed(Exception):
    """The member closed the link (it stopped or died); no answer will come."""


class MemberLink(asyncio.Protocol):
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader = wire.ResponseReader()
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._out: list[bytes] = []
        self._next_id = 0
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, path: str, index: int) -> MemberLink:
        loop = asyncio.get_running_loop()
        _, link = await loop.create_unix_connection(cls, path)
        link._control(wire.HELLO, DIGEST + index.to_bytes(2, "little"))
        return link

    def ready(self, index: int) -> None:
        self._control(wire.READY, index.to_bytes(2, "little"))

    def _control(self, kind: int, payload: bytes) -> None:
        self._enqueue(wire.request_frame(wire.CONTROL_CALL_ID, kind, b"", payload))

    async def call(self, method: int, metadata: bytes, payload: bytes) -> tuple[int, bytes]:
        """(status, payload) of one forwarded unary call."""
        if self._transport is None:
            raise LinkClosed()
        call_id = self._next_id = (self._next_id % 0xFFFFFFFF) + 1  # 0 is for control frames
        fut: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        self._pending[call_id] = fut
        self._enqueue(wire.request_frame(call_id, method, metadata, payload))
        try:
            return await fut
        finally:
            self._pending.pop(call_id, None)

    def _enqueue(self, frame: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(out)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        pending = self._pending
        for call_id, status, payload in self._reader.feed(data):
            fut = pending.get(call_id)
            if fut is not None and not fut.done():
                fut.set_result((status, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(LinkClosed())
        self.closed.set()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
