"""Message streams between transports on real gRPC servers: order, batching, failures, recovery."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from petcd.peer import PeerConfig
from petcd.proto.raftpb import raft_pb2 as raftpb
from tests.harness import free_ports
from tests.peer.cluster import FAST, Member, closing, connected, msg, run, start_members, until


def test_messages_flow_both_ways_in_order(tmp_path: Path) -> None:
    async def body() -> None:
        a, b, c = await start_members(tmp_path, 3)
        async with closing(a, b, c):
            for x in (a, b, c):
                for y in (a, b, c):
                    if x is not y:
                        await connected(x, y)
            for i in range(1, 301):
                a.transport.send([msg(b.id, a.id, i), msg(c.id, a.id, i)])
                b.transport.send([msg(a.id, b.id, i)])
                c.transport.send([msg(a.id, c.id, i)])
                if i % 50 == 0:
                    await asyncio.sleep(0)  # let the streams interleave with the sends
            want = list(range(1, 301))
            await until(lambda: b.received_from(a.id) == want, what="a->b")
            await until(lambda: c.received_from(a.id) == want, what="a->c")
            await until(lambda: a.received_from(b.id) == want and a.received_from(c.id) == want, what="->a")
            # each message went only to its addressee
            assert all(m.to == b.id for m in b.received)
            st = a.transport.stats()
            assert st[b.id].messages_sent == 300 and st[b.id].messages_dropped == 0
            assert st[b.id].connected
            assert b.transport.stats()[a.id].messages_received == 300
            assert a.id in b.transport.inbound_peers()
            assert a.unreachable == [] and b.unreachable == []

    run(body)


def test_many_sends_go_out_in_few_batches_under_the_byte_cap(tmp_path: Path) -> None:
    cap = 64 * 1024
    cfg = PeerConfig(backoff_initial=0.02, backoff_max=0.2, max_batch_bytes=cap)

    async def body() -> None:
        a, b = await start_members(tmp_path, 2, config=cfg)
        async with closing(a, b):
            await connected(a, b)
            # 1000 small messages in one go: the writer finds them all queued
            a.transport.send([msg(b.id, a.id, i) for i in range(1, 1001)])
            await until(lambda: len(b.received) == 1000, what="small messages")
            assert b.received_from(a.id) == list(range(1, 1001))
            small_batches = a.transport.stats()[b.id].batches_sent
            assert small_batches <= 3, small_batches
            # 200 messages of ~4 KiB: the cap splits them, and no batch exceeds it
            before = len(b.batches)
            a.transport.send([msg(b.id, a.id, 2000 + i, payload=b"x" * 4000) for i in range(200)])
            await until(lambda: len(b.received) == 1200, what="large messages")
            big = b.batches[before:]
            assert 200 * 4000 // cap <= len(big) <= 200 * 4000 // cap + 4, len(big)
            assert all(sum(m.ByteSize() for m in batch) <= cap for batch in big)
            assert [m.index for batch in big for m in batch] == [2000 + i for i in range(200)]

    run(body)


def test_down_peer_is_reported_unreachable_and_recovers(tmp_path: Path) -> None:
    async def body() -> None:
        ports = free_ports(2)
        a = Member(1, ports[0], tmp_path)
        b = Member(2, ports[1], tmp_path)
        a.transport.add_peer(b.id, [b.url])
        b.transport.add_peer(a.id, [a.url])
        await a.serve()
        await a.transport.start()
        await b.transport.start()
        async with closing(a, b):
            slowest = 0.0
            # b's server is not up: sends never wait, the peer is reported unreachable
            for i in range(1, 51):
                t0 = time.perf_counter()
                a.transport.send([msg(b.id, a.id, i)])
                slowest = max(slowest, time.perf_counter() - t0)
                await asyncio.sleep(0.005)
            await until(lambda: b.id in a.unreachable, what="report_unreachable")
            assert a.transport.active_since(b.id) is None
            assert not a.transport.stats()[b.id].connected

            await b.serve()
            await connected(a, b)
            since = a.transport.active_since(b.id)
            a.transport.send([msg(b.id, a.id, 100)])
            await until(lambda: 100 in b.received_from(a.id), what="delivery after recovery")
            # what was queued while b was down was trimmed to the newest, not delivered stale in bulk
            assert len(b.received_from(a.id)) <= FAST.max_queue_messages_down + 1

            # b goes away again mid-stream, then comes back on the same port
            reports = len(a.unreachable)
            await b.halt_server()
            for i in range(101, 121):
                t0 = time.perf_counter()
                a.transport.send([msg(b.id, a.id, i)])
                slowest = max(slowest, time.perf_counter() - t0)
                await asyncio.sleep(0.01)
            await until(lambda: len(a.unreachable) > reports, what="second report_unreachable")
            await until(lambda: a.transport.active_since(b.id) is None, what="stream down")
            await b.serve()
            await connected(a, b)
            assert a.transport.active_since(b.id) != since
            a.transport.send([msg(b.id, a.id, 200)])
            await until(lambda: 200 in b.received_from(a.id), what="delivery after second recovery")
            assert slowest < 0.05, slowest
            assert a.transport.stats()[b.id].stream_failures >= 2

    run(body)


def test_full_queue_drops_without_blocking(tmp_path: Path) -> None:
    cfg = PeerConfig(backoff_initial=0.02, backoff_max=0.2, max_queue_messages=100, log_interval=0.0)

    async def body() -> None:
        a, b = await start_members(tmp_path, 2, config=cfg)
        async with closing(a, b):
            await connected(a, b)
            t0 = time.perf_counter()
            a.transport.send([msg(b.id, a.id, i) for i in range(1, 10_001)])
            took = time.perf_counter() - t0
            st = a.transport.stats()[b.id]
            assert st.messages_dropped == 9_900
            await asyncio.sleep(0)
            assert a.unreachable == [b.id]  # once: a peer that cannot keep up is throttled by raft
            await until(lambda: len(b.received) == 100, what="the queued hundred")
            # the first hundred were queued; the rest dropped, never reordered
            assert b.received_from(a.id) == list(range(1, 101))
            assert took < 1.0, took
            # the stream is still fine afterwards
            a.transport.send([msg(b.id, a.id, 20_000)])
            await until(lambda: b.received_from(a.id)[-1] == 20_000, what="later message")

    run(body)


def test_queue_while_down_keeps_the_newest(tmp_path: Path) -> None:
    async def body() -> None:
        ports = free_ports(2)
        a = Member(1, ports[0], tmp_path)
        b = Member(2, ports[1], tmp_path)
        a.transport.add_peer(b.id, [b.url])
        await a.transport.start()
        async with closing(a, b):
            a.transport.send([msg(b.id, a.id, i) for i in range(1, 1001)])
            assert a.transport.stats()[b.id].messages_dropped == 1000 - FAST.max_queue_messages_down
            await b.serve()
            await b.transport.start()
            await until(lambda: len(b.received) == FAST.max_queue_messages_down, what="kept messages")
            assert b.received_from(a.id) == list(range(1001 - FAST.max_queue_messages_down, 1001))

    run(body)


def test_update_peer_moves_the_stream(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        async with closing(a, b):
            await connected(a, b)
            await b.halt_server()
            b.port = free_ports(1)[0]
            b.url = f"http://127.0.0.1:{b.port}"
            await b.serve()
            a.transport.update_peer(b.id, [b.url])
            assert a.transport.peers()[b.id] == [b.url]
            await connected(a, b)
            a.transport.send([msg(b.id, a.id, 7)])
            await until(lambda: 7 in b.received_from(a.id), what="delivery at the new URL")

    run(body)


def test_second_url_used_when_first_is_dead(tmp_path: Path) -> None:
    async def body() -> None:
        ports = free_ports(3)
        a = Member(1, ports[0], tmp_path)
        b = Member(2, ports[1], tmp_path)
        a.transport.add_peer(b.id, [f"http://127.0.0.1:{ports[2]}", b.url])
        await b.serve()
        await b.transport.start()
        await a.transport.start()
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([msg(b.id, a.id, 1)])
            await until(lambda: b.received_from(a.id) == [1], what="delivery via second URL")

    run(body)


def test_probe_reports_identity_and_version(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        async with closing(a, b):
            r = await a.transport.probe(b.id)
            assert (r.cluster_id, r.member_id, r.cluster_version) == (0xC1A5, b.id, "3.5.0")
            assert r.server_version and r.rtt >= 0
            r2 = await a.transport.probe_url(b.url)
            assert r2.member_id == b.id
            stranger = Member(9, free_ports(1)[0], tmp_path, cluster_id=0xBAD)
            try:
                await stranger.transport.probe_url(b.url)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "bad" in (exc.details() or "") and "c1a5" in (exc.details() or "")
            else:
                raise AssertionError("probe from another cluster was answered")

    run(body)


def test_unknown_peer_and_self_are_ignored(tmp_path: Path) -> None:
    async def body() -> None:
        (a,) = await start_members(tmp_path, 1)
        async with closing(a):
            assert not a.transport.add_peer(a.id, [a.url])
            a.transport.send([msg(0x77, a.id, 1), msg(a.id, a.id, 2)])
            snap = raftpb.Message(type=raftpb.MsgSnap, to=0x77)
            a.transport.send([snap])
            assert a.snapshot_reports == []  # never from inside send(): raft may be mid-Ready
            await asyncio.sleep(0)
            assert a.snapshot_reports == [(0x77, True)]

    run(body)


def test_a_failing_step_does_not_cut_the_stream(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        got: list[int] = []

        def on_messages(msgs: list[raftpb.Message]) -> None:
            for m in msgs:
                if m.index == 2:
                    raise ValueError("bad message")
                got.append(m.index)

        b.transport._on_messages = on_messages
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([msg(b.id, a.id, 1)])
            await until(lambda: got == [1], what="first")
            a.transport.send([msg(b.id, a.id, 2)])
            await asyncio.sleep(0.05)
            a.transport.send([msg(b.id, a.id, 3)])
            await until(lambda: got == [1, 3], what="after the failure")
            assert a.transport.stats()[b.id].stream_failures == 0

    run(body)


def test_silent_peer_times_out_the_handshake(tmp_path: Path) -> None:
    # accepts TCP connections and never says a word: gRPC would wait for its connect deadline
    cfg = PeerConfig(backoff_initial=0.02, backoff_max=0.2, handshake_timeout=0.3, log_interval=0.0)

    async def body() -> None:
        held: list[asyncio.StreamWriter] = []

        async def mute(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            held.append(w)

        silent = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        a = Member(1, free_ports(1)[0], tmp_path, config=cfg)
        a.transport.add_peer(2, [f"http://127.0.0.1:{port}"])
        await a.transport.start()
        try:
            a.transport.send([msg(2, 1, 1)])
            await until(lambda: 2 in a.unreachable, timeout=3, what="report_unreachable")
            assert a.transport.active_since(2) is None
        finally:
            await a.close()
            for w in held:
                w.close()
            silent.close()
            await silent.wait_closed()

    run(body)
