"""Snapshot transfer: a MsgSnap plus a backend database file, streamed in chunks.

The first chunk carries the identity header, the MsgSnap itself (its ``snapshot.data`` is the
small raft snapshot data; the database file is the payload) and the payload's total size;
every chunk carries the next piece of the file at its offset. The receiver writes the pieces
to a ``.part`` file, checks offsets are contiguous and the total matches, fsyncs, renames it
to ``.db`` and hands the MsgSnap and the path to the server. Its ack (sent only after the
server has taken the snapshot) tells the sender the transfer succeeded.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

import grpc

from petcd.proto.peerpb import peer_pb2 as peerpb
from petcd.proto.raftpb import raft_pb2 as raftpb

PART_SUFFIX = ".part"
DB_SUFFIX = ".db"

SnapshotCall = grpc.aio.StreamUnaryCall[peerpb.SnapshotChunk, peerpb.SnapshotAck]


class SnapshotTransferError(Exception):
    """A transfer that must end with ``code``; ``str(exc)`` is the text for the other side."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


async def send_snapshot(
    open_call: Callable[[], SnapshotCall],
    header: peerpb.SnapshotChunk,
    msg: raftpb.Message,
    path: str,
    chunk_bytes: int,
    chunk_timeout: float,
    ack_timeout: float,
) -> int:
    """Stream ``path`` with ``msg``; return the bytes the receiver acknowledged.

    ``header`` holds the identity fields. Raises ``grpc.aio.AioRpcError`` when the receiver
    refuses or fails, ``TimeoutError`` when it stalls, ``SnapshotTransferError`` if the file
    changed size underneath (the caller must hand over a stable copy).
    """
    f: BinaryIO = await asyncio.to_thread(open, path, "rb")
    call: SnapshotCall | None = None
    try:
        size = (await asyncio.to_thread(os.fstat, f.fileno())).st_size
        call = open_call()
        offset = 0
        while True:
            data = await asyncio.to_thread(f.read, chunk_bytes)
            if offset == 0:
                chunk = peerpb.SnapshotChunk(
                    cluster_id=header.cluster_id,
                    sender_id=header.sender_id,
                    receiver_id=header.receiver_id,
                    message=msg,
                    total_size=size,
                    offset=0,
                    data=data,
                )
            else:
                chunk = peerpb.SnapshotChunk(offset=offset, data=data)
            async with asyncio.timeout(chunk_timeout):
                await call.write(chunk)
            offset += len(data)
            if not data or offset >= size:
                break
        if offset != size:
            raise SnapshotTransferError(
                grpc.StatusCode.DATA_LOSS,
                f"snapshot file {path} changed size while sending ({offset} != {size})",
            )
        async with asyncio.timeout(chunk_timeout):
            await call.done_writing()
        async with asyncio.timeout(ack_timeout):
            ack = await call
        if ack.received_bytes != size:
            raise SnapshotTransferError(
                grpc.StatusCode.DATA_LOSS, f"receiver acknowledged {ack.received_bytes} of {size} bytes"
            )
        return size
    finally:
        if call is not None and not call.done():
            call.cancel()
        await asyncio.to_thread(f.close)


async def receive_snapshot(
    first: peerpb.SnapshotChunk, rest: AsyncIterator[peerpb.SnapshotChunk], directory: Path
) -> tuple[raftpb.Message, Path]:
    """Write the payload that starts with ``first`` to a file in ``directory``; return the
    MsgSnap and the file's path. Raises ``SnapshotTransferError`` for a malformed transfer;
    the partial file is removed on any failure."""
    msg = first.message
    if msg.type != raftpb.MsgSnap:
        raise SnapshotTransferError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"snapshot stream carries {raftpb.MessageType.Name(msg.type)}, not MsgSnap",
        )
    if first.offset != 0:
        raise SnapshotTransferError(
            grpc.StatusCode.INVALID_ARGUMENT, "first snapshot chunk must start at offset 0"
        )
    total = first.total_size
    md = msg.snapshot.metadata
    prefix = f"snap-{md.term:016x}-{md.index:016x}-from-{first.sender_id:x}-"
    fd, part = await asyncio.to_thread(tempfile.mkstemp, PART_SUFFIX, prefix, str(directory))
    f = os.fdopen(fd, "wb")
    done = False
    try:
        received = 0
        chunk: peerpb.SnapshotChunk | None = first
        it = aiter(rest)
        while chunk is not None:
            if chunk.offset != received:
                raise SnapshotTransferError(
                    grpc.StatusCode.DATA_LOSS, f"snapshot chunk at offset {chunk.offset}, expected {received}"
                )
            if received + len(chunk.data) > total:
                raise SnapshotTransferError(
                    grpc.StatusCode.DATA_LOSS, f"snapshot payload exceeds its announced size {total}"
                )
            if chunk.data:
                await asyncio.to_thread(f.write, chunk.data)
                received += len(chunk.data)
            chunk = await anext(it, None)
        if received != total:
            raise SnapshotTransferError(
                grpc.StatusCode.DATA_LOSS, f"snapshot truncated: received {received} of {total} bytes"
            )
        await asyncio.to_thread(_sync_close, f)
        final = Path(part[: -len(PART_SUFFIX)] + DB_SUFFIX)
        await asyncio.to_thread(os.replace, part, final)
        done = True
        return msg, final
    finally:
        if not done:
            await asyncio.to_thread(_discard, f, part)


def _sync_close(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


def _discard(f: BinaryIO, path: str) -> None:
    f.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_partial_files(directory: Path) -> int:
    """Delete transfers a crash left half-written (blocking; run in a thread)."""
    n = 0
    for p in directory.glob(f"*{PART_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n
