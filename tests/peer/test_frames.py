"""Framed raft streams (petcd.peer.frames) on plain-text peer URLs: used by default, refused and
kept alive as the gRPC streams are, and a gRPC-only peer still reached over gRPC."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from pathlib import Path

import grpc
import pytest

from petcd.peer import PeerConfig
from petcd.peer.frames import PREFACE, FrameReader, FrameTooLarge
from petcd.proto.peerpb import peer_pb2 as peerpb
from tests.harness import free_ports
from tests.peer.cluster import (
    CLUSTER,
    FAST,
    Member,
    closing,
    connected,
    msg,
    run,
    start_all,
    start_members,
    until,
)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def test_reader_splits_frames_across_and_within_chunks() -> None:
    r = FrameReader(100)
    stream = _frame(b"a" * 10) + _frame(b"") + _frame(b"b" * 100)
    got: list[bytes] = []
    for i in range(0, len(stream), 3):
        got += r.feed(stream[i : i + 3])
    assert got == [b"a" * 10, b"", b"b" * 100]
    assert r.feed(_frame(b"x") + _frame(b"yz")) == [b"x", b"yz"]
    with pytest.raises(FrameTooLarge, match=r"larger than max \(101 vs. 100\)"):
        r.feed(_frame(b"c" * 101)[:4])


def test_streams_between_peer_ports_are_framed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "petcd.peer")

    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        async with closing(a, b):
            await connected(a, b)
            await connected(b, a)
            a.transport.send([msg(b.id, a.id, i) for i in range(1, 101)])
            await until(lambda: b.received_from(a.id) == list(range(1, 101)), what="a->b")
            # the stream into b is one of b's frame receivers, not a gRPC call
            assert len(b.frame_receivers) == 1
            assert a.id in b.transport.inbound_peers()
            assert a.transport.stats()[b.id].messages_sent == 100

    run(body)
    assert "framed stream established" in caplog.text
    assert "gRPC stream established" not in caplog.text


def test_a_grpc_only_peer_gets_a_grpc_stream(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "petcd.peer")

    async def body() -> None:
        ports = free_ports(2)
        a = Member(1, ports[0], tmp_path)
        b = Member(2, ports[1], tmp_path, grpc_only=True)
        a.transport.add_peer(b.id, [b.url])
        await b.serve()
        await a.transport.start()
        await b.transport.start()
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([msg(b.id, a.id, i) for i in range(1, 11)])
            await until(lambda: b.received_from(a.id) == list(range(1, 11)), what="a->b over gRPC")
            assert a.transport.stats()[b.id].stream_failures == 0

    run(body)
    assert "does not take framed streams" in caplog.text
    assert "gRPC stream established" in caplog.text


def test_a_frame_over_the_receivers_limit_is_refused_as_grpc_refuses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 64 * 1024

    async def body() -> None:
        a, b = await start_members(tmp_path, 2, server_max_receive=limit)
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([msg(b.id, a.id, 1, payload=os.urandom(2 * limit))])
            await until(lambda: a.transport.stats()[b.id].stream_failures >= 1, what="refusal")
            assert b.received == []
            # the link comes back, and what fits gets through
            await connected(a, b)
            a.transport.send([msg(b.id, a.id, 2)])
            await until(lambda: b.received_from(a.id) == [2], what="small message after the refusal")

    run(body)
    assert "RESOURCE_EXHAUSTED" in caplog.text or "larger than max" in caplog.text


def test_a_removed_sender_is_refused_on_its_open_framed_stream(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        async with closing(a, b):
            await connected(a, b)
            b.transport.remove_peer(a.id)
            a.transport.send([msg(b.id, a.id, 1)])
            await until(lambda: a.removed_by == [b.id], what="PERMISSION_DENIED through the frame")
            assert b.received == []

    run(body)


async def _silent_receiver(port: int, stop: asyncio.Event, pings: list[int]) -> None:
    """Accepts any framed stream and then never answers: a member whose process is stopped."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(PREFACE))
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        await reader.readexactly(n)
        writer.write(PREFACE + _frame(b"\x01"))
        with_pings = 0
        try:
            while True:
                (n,) = struct.unpack(">I", await reader.readexactly(4))
                await reader.readexactly(n)
                if n == 0:
                    with_pings += 1
                    pings.append(with_pings)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await stop.wait()


def test_a_peer_that_stops_answering_pings_is_dropped(tmp_path: Path) -> None:
    cfg = PeerConfig(backoff_initial=0.02, backoff_max=0.2, log_interval=0.0,
                     keepalive_seconds=0.2, keepalive_timeout_seconds=0.2)

    async def body() -> None:
        ports = free_ports(2)
        a = Member(1, ports[0], tmp_path, config=cfg)
        stop = asyncio.Event()
        pings: list[int] = []
        silent = asyncio.ensure_future(_silent_receiver(ports[1], stop, pings))
        await asyncio.sleep(0.05)
        a.transport.add_peer(2, [f"http://127.0.0.1:{ports[1]}"])
        await a.transport.start()
        try:
            await until(lambda: a.transport.active_since(2) is not None, what="accepted")
            await until(lambda: a.transport.stats()[2].stream_failures >= 1, timeout=5, what="keepalive timeout")
            assert pings, "the sender never pinged"
            assert 2 in a.unreachable
        finally:
            await a.transport.stop()
            stop.set()
            await silent

    run(body)


def test_a_stream_for_another_cluster_is_refused_with_failed_precondition(tmp_path: Path) -> None:
    async def body() -> None:
        (b,) = await start_members(tmp_path, 1)
        async with closing(b):
            reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
            header = peerpb.MessageBatch(cluster_id=0xD1FF, sender_id=5, receiver_id=b.id)
            writer.write(PREFACE + _frame(header.SerializeToString()))
            assert await reader.readexactly(len(PREFACE)) == PREFACE
            (n,) = struct.unpack(">I", await reader.readexactly(4))
            body = await reader.readexactly(n)
            assert body[0] == 2 and body[1] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
            text = body[2:].decode()
            assert "cluster ID mismatch" in text and "d1ff" in text and f"{CLUSTER:x}" in text, text
            assert await reader.read() == b""  # and closed
            writer.close()
            assert b.received == []

    run(body)


def test_framed_and_grpc_peers_mix(tmp_path: Path) -> None:
    # a member whose peer URL is served by gRPC alone (an older petcd) in a cluster with framed ones
    async def body() -> None:
        ports = free_ports(3)
        ms = await start_all([Member(1, ports[0], tmp_path), Member(2, ports[1], tmp_path, grpc_only=True),
                              Member(3, ports[2], tmp_path, config=FAST)])
        async with closing(*ms):
            for m in ms:
                for o in ms:
                    if o is not m:
                        m.transport.send([msg(o.id, m.id, i) for i in range(1, 21)])
            for m in ms:
                for o in ms:
                    if o is not m:
                        await until(lambda m=m, o=o: m.received_from(o.id) == list(range(1, 21)),
                                    what=f"{o.id}->{m.id}")

    run(body)
