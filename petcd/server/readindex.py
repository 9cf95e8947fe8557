"""Linearizable reads without a log write (raft's ReadIndex), batched.

A read first learns the leader's commit index through one ReadIndex round, then waits until
this member has applied up to it, and only then reads its local store. Every read that
arrives while a round is in flight joins the next round, so a burst of reads costs one round.
A round's request may die unanswered: sent while no leader is known, or taken down with a leader
that lost its leadership (an old leader resumed after a pause). It is sent again at once when
a new leader becomes known, and otherwise every READ_INDEX_RETRY seconds (etcd's retry timer),
until the request deadline.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from petcd import errors
from petcd.raft import ProposalDroppedError, ReadState

if TYPE_CHECKING:
    from petcd.server.etcdserver import EtcdServer

READ_INDEX_RETRY = 0.5


class LinearizableReads:
    def __init__(self, srv: EtcdServer) -> None:
        self.srv = srv
        self._waiters: list[asyncio.Future[None]] = []
        self._states: dict[bytes, asyncio.Future[int]] = {}
        self._applied: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        # resolved to send the round's request again (a new leader, the retry timer, an answer)
        self._kick: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        handle = self.srv.clock.call_later(self.srv.settings.request_timeout, functools.partial(_expire, fut))
        try:
            await fut
        except TimeoutError:
            raise errors.RequestTimeoutError() from None
        finally:
            handle.cancel()

    def on_read_states(self, states: Sequence[ReadState]) -> None:
        for rs in states:
            fut = self._states.pop(rs.request_ctx, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)

    def on_leader_change(self, leader: int) -> None:
        """A new leader is known: a pending request may have died with the old one, so ask again."""
        if leader != 0 and self._kick is not None:
            _resolve(self._kick)

    def on_applied(self, applied: int) -> None:
        if not self._applied:
            return
        keep = []
        for idx, fut in self._applied:
            if idx <= applied:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((idx, fut))
        self._applied = keep

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            if not waiters:
                continue
            try:
                index = await self._read_index()
                await self._wait_applied(index)
            except Exception as exc:  # every waiter in the round gets the error, each its own
                make = _error_factory(exc)
                for w in waiters:
                    if not w.done():
                        w.set_exception(make())
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _read_index(self) -> int:
        srv = self.srv
        clock = srv.clock
        loop = asyncio.get_running_loop()
        deadline = clock.now() + srv.settings.request_timeout
        # one context for every send of the round: whichever answer comes first will do, as
        # each send was made after every read of the round arrived
        ctx = srv.idgen.next().to_bytes(8, "big")
        fut: asyncio.Future[int] = loop.create_future()
        self._states[ctx] = fut
        try:
            while True:
                kick: asyncio.Future[None] = loop.create_future()
                self._kick = kick
                try:
                    srv.raft.read_index(ctx)
                except ProposalDroppedError:
                    pass  # no leader to ask: a new one kicks the loop
                remaining = deadline - clock.now()
                if remaining <= 0:
                    raise errors.RequestTimeoutError()
                handle = clock.call_later(min(remaining, READ_INDEX_RETRY), functools.partial(_resolve, kick))
                fut.add_done_callback(functools.partial(_resolve_after, kick))
                try:
                    await kick
                finally:
                    handle.cancel()
                    self._kick = None
                if fut.done():
                    return fut.result()
        finally:
            self._states.pop(ctx, None)

    async def wait_applied(self, index: int) -> None:
        """Return once ``index`` is applied (no timeout of its own)."""
        await self._wait_applied(index)

    async def _wait_applied(self, index: int) -> None:
        if index <= self.srv.applied_index:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied.append((index, fut))
        await fut


def _error_factory(exc: Exception) -> Callable[[], BaseException]:
    if isinstance(exc, errors.PetcdError):
        cls, message = type(exc), str(exc)
        return lambda: cls(message)
    return errors.RequestTimeoutError


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _resolve_after(kick: asyncio.Future[None], _: asyncio.Future[Any]) -> None:
    _resolve(kick)


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
