"""A link in backoff to a peer that went away redials at once when the peer shows it is back
(issue 11: the first write through a restarted member waited out its peers' backoff)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from petcd.peer import PeerConfig
from tests.peer.cluster import Member, closing, connected, run, start_members, until

# a backoff long enough that waiting it out is plain to see: 2-4 s after the first failure
SLOW = PeerConfig(backoff_initial=4.0, backoff_max=8.0, log_interval=0.0)


async def _restart(old: Member, root: Path, peers: list[Member]) -> Member:
    """Stop ``old`` for good and start a new member with its id on its port (a restart)."""
    await old.close()
    new = Member(old.id, old.port, root / "restarted", config=PeerConfig(backoff_initial=0.02, backoff_max=0.2))
    for p in peers:
        new.transport.add_peer(p.id, [p.url])
    await new.serve()
    return new


async def _in_backoff(a: Member, b: Member, failures: int) -> None:
    """Wait until ``a``'s link to ``b`` has failed since ``b`` went down (``failures`` before)."""
    await until(lambda: a.transport.stats()[b.id].stream_failures > failures, what="a's link to b fails")
    await asyncio.sleep(0.3)  # a is asleep in its backoff now


def test_inbound_stream_from_a_restarted_peer_cuts_the_backoff_short(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2, config=SLOW)
        async with closing(a):
            await connected(a, b)
            await connected(b, a)
            failures = a.transport.stats()[b.id].stream_failures
            b2 = await _restart(b, tmp_path, [a])
            async with closing(b2):
                await _in_backoff(a, b2, failures)
                assert a.transport.active_since(b2.id) is None
                started = time.monotonic()
                await b2.transport.start()  # b2's own link opens a stream to a
                await connected(b2, a)
                await until(lambda: a.transport.active_since(b2.id) is not None, what="a redials b", timeout=5)
                took = time.monotonic() - started
                assert took < 1.0, f"a's link to the restarted b came back after {took:.2f}s (its backoff: 2-4 s)"

    run(body)


def test_probe_from_a_restarted_peer_cuts_the_backoff_short(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2, config=SLOW)
        async with closing(a):
            await connected(a, b)
            failures = a.transport.stats()[b.id].stream_failures
            b2 = await _restart(b, tmp_path, [a])
            async with closing(b2):
                await _in_backoff(a, b2, failures)
                started = time.monotonic()
                await b2.transport.probe(a.id)
                await until(lambda: a.transport.active_since(b2.id) is not None, what="a redials b", timeout=5)
                took = time.monotonic() - started
                assert took < 1.0, f"a's link came back {took:.2f}s after the probe (its backoff: 2-4 s)"

    run(body)


def test_a_kick_while_the_stream_is_up_changes_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        async with closing(a, b):
            await connected(a, b)
            since = a.transport.active_since(b.id)
            failures = a.transport.stats()[b.id].stream_failures
            a.transport.peer_alive(b.id)
            await b.transport.probe(a.id)
            await asyncio.sleep(0.3)
            assert a.transport.active_since(b.id) == since
            assert a.transport.stats()[b.id].stream_failures == failures

    run(body)
