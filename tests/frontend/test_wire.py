"""The front-end link's frames and method table, without processes: metadata encoding, frame
splitting however the bytes arrive, size limits, and a method table both sides agree on."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from petcd.frontend import wire
from petcd.frontend.methods import BY_PATH, DIGEST, METHODS, Arity
from petcd.proto.etcdserverpb import rpc_pb2

# ---------------------------------------------------------------------------------------------
# metadata


def test_metadata_round_trip_keeps_str_and_bin_values() -> None:
    md: wire.Metadata = (
        ("hasleader", "true"),
        ("token", "ünïcödé"),
        ("x-trace-bin", bytes(range(256))),  # not UTF-8: must stay bytes
        ("empty", ""),
        ("empty-bin", b""),
        ("hasleader", "repeated keys keep their order"),
    )
    assert wire.decode_metadata(wire.encode_metadata(md)) == md


def test_metadata_bytes_value_of_a_text_key_comes_back_as_text() -> None:
    assert wire.decode_metadata(wire.encode_metadata([("k", b"v")])) == (("k", "v"),)


def test_empty_metadata() -> None:
    assert wire.encode_metadata([]) == b""
    assert wire.decode_metadata(b"") == ()


def test_metadata_size_limits() -> None:
    ok = (("k" * 300, "v" * 0xF000),)
    assert wire.decode_metadata(wire.encode_metadata(ok)) == ok
    with pytest.raises(wire.FrameError):
        wire.encode_metadata([("k", "v" * 0x10000)])
    with pytest.raises(wire.FrameError):  # the whole block must fit the frame's u16 length
        wire.encode_metadata([("a", "v" * 0x8000), ("b", "v" * 0x8000)])


@pytest.mark.parametrize("cut", [1, 2, 3, 5])
def test_truncated_metadata_is_a_frame_error(cut: int) -> None:
    data = wire.encode_metadata([("key", "value")])
    with pytest.raises(wire.FrameError):
        wire.decode_metadata(data[: len(data) - cut])


# ---------------------------------------------------------------------------------------------
# frames

REQUESTS = [
    (1, 7, wire.encode_metadata([("hasleader", "true")]), rpc_pb2.PutRequest(key=b"k", value=b"v").SerializeToString()),
    (2, 0, b"", b""),
    (wire.CONTROL_CALL_ID, wire.HELLO, b"", DIGEST + (3).to_bytes(2, "little")),
    (0xFFFFFFFF, 0xFFFE, b"", bytes(range(256)) * 40),
    (5, 3, wire.encode_metadata([("a-bin", b"\x00\xff")]), b"x" * 70_000),
]
RESPONSES = [
    (1, 0, rpc_pb2.PutResponse().SerializeToString()),
    (2, 11, b"etcdserver: mvcc: required revision is a future revision"),
    (0xFFFFFFFF, 0xFFFF, b""),
    (9, 0, b"y" * 70_000),
]


def _request_stream() -> bytes:
    return b"".join(wire.request_frame(*f) for f in REQUESTS)


def _response_stream() -> bytes:
    return b"".join(wire.response_frame(*f) for f in RESPONSES)


def _feed_in_pieces(feed: Callable[[bytes], Sequence[Any]], data: bytes, sizes: list[int]) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for n in sizes:
        out += feed(data[pos : pos + n])
        pos += n
    out += feed(data[pos:])
    return out


def test_request_frames_byte_by_byte() -> None:
    reader = wire.RequestReader(1 << 20)
    data = _request_stream()
    got: list[tuple[int, int, bytes, bytes]] = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
    assert got == REQUESTS


def test_request_frames_in_one_chunk_and_random_chunks() -> None:
    data = _request_stream()
    assert wire.RequestReader(1 << 20).feed(data) == REQUESTS
    rng = random.Random(7)
    for _ in range(20):
        sizes = [rng.randint(0, 9000) for _ in range(30)]
        assert _feed_in_pieces(wire.RequestReader(1 << 20).feed, data, sizes) == REQUESTS


def test_response_frames_byte_by_byte() -> None:
    reader = wire.ResponseReader()
    data = _response_stream()
    got: list[tuple[int, int, bytes]] = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
    assert got == RESPONSES


def test_response_frames_in_one_chunk_and_random_chunks() -> None:
    data = _response_stream()
    assert wire.ResponseReader().feed(data) == RESPONSES
    rng = random.Random(11)
    for _ in range(20):
        sizes = [rng.randint(0, 9000) for _ in range(30)]
        assert _feed_in_pieces(wire.ResponseReader().feed, data, sizes) == RESPONSES


def test_partial_frame_waits_for_the_rest() -> None:
    frame = wire.request_frame(4, 2, b"", b"payload")
    reader = wire.RequestReader(100)
    assert reader.feed(frame[:-1]) == []
    assert reader.feed(frame[-1:] + frame[:3]) == [(4, 2, b"", b"payload")]
    assert reader.feed(frame[3:]) == [(4, 2, b"", b"payload")]


def test_oversize_request_frame_is_refused_from_its_header() -> None:
    reader = wire.RequestReader(max_payload=10)
    assert reader.feed(wire.request_frame(1, 1, b"", b"x" * 10)) == [(1, 1, b"", b"x" * 10)]
    big = wire.request_frame(2, 1, b"", b"x" * 11)
    with pytest.raises(wire.FrameError):
        # the header alone is enough: the member never buffers the payload
        reader.feed(big[: wire.REQUEST.size])


def test_frame_layout_is_little_endian() -> None:
    assert wire.request_frame(0x01020304, 0x0506, b"md", b"pay") == (
        b"\x03\x00\x00\x00" b"\x04\x03\x02\x01" b"\x06\x05" b"\x02\x00" b"md" b"pay"
    )
    assert wire.response_frame(0x01020304, 13, b"err") == b"\x03\x00\x00\x00\x04\x03\x02\x01\x0d\x00err"


# ---------------------------------------------------------------------------------------------
# method table


def test_method_indices_are_positions_in_path_order() -> None:
    assert [m.index for m in METHODS] == list(range(len(METHODS)))
    keys = [(m.service, m.name) for m in METHODS]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert len(METHODS) < wire.READY  # method numbers never collide with control kinds


def test_method_table_covers_the_client_api() -> None:
    expected = {
        "/etcdserverpb.KV/Put": Arity.UNARY_UNARY,
        "/etcdserverpb.KV/Range": Arity.UNARY_UNARY,
        "/etcdserverpb.KV/Txn": Arity.UNARY_UNARY,
        "/etcdserverpb.KV/Compact": Arity.UNARY_UNARY,
        "/etcdserverpb.Lease/LeaseGrant": Arity.UNARY_UNARY,
        "/etcdserverpb.Lease/LeaseKeepAlive": Arity.STREAM_STREAM,
        "/etcdserverpb.Watch/Watch": Arity.STREAM_STREAM,
        "/etcdserverpb.Maintenance/Snapshot": Arity.UNARY_STREAM,
        "/etcdserverpb.Maintenance/Status": Arity.UNARY_UNARY,
        "/etcdserverpb.Cluster/MemberList": Arity.UNARY_UNARY,
        "/etcdserverpb.Auth/AuthStatus": Arity.UNARY_UNARY,
        "/v3lockpb.Lock/Lock": Arity.UNARY_UNARY,
        "/v3electionpb.Election/Observe": Arity.UNARY_STREAM,
    }
    for path, arity in expected.items():
        assert path in BY_PATH, path
        assert BY_PATH[path].arity is arity, path
        assert BY_PATH[path].path == path
        assert METHODS[BY_PATH[path].index] is BY_PATH[path]
    # every method of every client service, nothing else
    services = rpc_pb2.DESCRIPTOR.services_by_name
    for svc in ("KV", "Watch", "Lease", "Cluster", "Maintenance", "Auth"):
        for m in services[svc].methods:
            assert f"/etcdserverpb.{svc}/{m.name}" in BY_PATH
    assert all(m.service.split(".")[0] in ("etcdserverpb", "v3lockpb", "v3electionpb") for m in METHODS)
    assert len(DIGEST) == 16


def test_method_table_is_the_same_in_another_process() -> None:
    """A member and its front-ends build the table separately; hash seeds must not change it."""
    code = (
        "from petcd.frontend.methods import METHODS, DIGEST;"
        "print(DIGEST.hex());"
        "print(';'.join(f'{m.index} {m.path} {m.arity.value}' for m in METHODS))"
    )
    here = f"{DIGEST.hex()}\n" + ";".join(f"{m.index} {m.path} {m.arity.value}" for m in METHODS) + "\n"
    for seed in ("1", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert out.stdout == here
