"""Frames on the link between the member process and one of its client front-ends.

The link is one Unix stream socket per front-end. A front-end sends a request frame for each
unary call it forwards and the member answers with a response frame carrying the same call id;
answers may come back in any order. Frames are written in batches (everything queued during one
turn of the event loop goes out in one write), so the member pays a read and a write per batch
rather than per call -- the point of the front-ends.

    request:   payload_len u32 | call_id u32 | method u16 | metadata_len u16 | metadata | payload
    response:  payload_len u32 | call_id u32 | status u16 | payload

All integers are little-endian. ``method`` indexes the method table both sides derive from the
same descriptors (checked by the hello frame). ``payload`` is the serialized request, or, in a
response, the serialized response when ``status`` is 0 (OK) and the UTF-8 status details
otherwise. ``metadata`` holds the call's invocation metadata as (u16 key length, u16 value
length, key, value) entries; gRPC bounds a call's metadata to 8 KiB by default, far below these.

Control frames use call id 0: the front-end's HELLO (payload: method-table digest, then its
index as u16) and READY (its gRPC server is listening). The member never answers them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

REQUEST = struct.Struct("<IIHH")
RESPONSE = struct.Struct("<IIH")
_MD_ENTRY = struct.Struct("<HH")

CONTROL_CALL_ID = 0
HELLO = 0xFFFF
READY = 0xFFFE

Metadata = tuple[tuple[str, str | bytes], ...]


class FrameError(Exception):
    """The peer sent bytes that are not a frame; the link must be closed."""


def encode_metadata(md: Iterable[tuple[str, str | bytes]]) -> bytes:
    out = bytearray()
    for key, value in md:
        k = key.encode("ascii")
        v = value if isinstance(value, bytes) else value.encode("utf-8")
        if len(k) > 0xFFFF or len(v) > 0xFFFF:
            raise FrameError(f"metadata entry {key!r} too large to forward")
        out += _MD_ENTRY.pack(len(k), len(v))
        out += k
        out += v
    if len(out) > 0xFFFF:
        raise FrameError(f"{len(out)} bytes of metadata are too many to forward")
    return bytes(out)


def decode_metadata(data: bytes) -> Metadata:
    md: list[tuple[str, str | bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        if pos + _MD_ENTRY.size > end:
            raise FrameError("truncated metadata entry")
        klen, vlen = _MD_ENTRY.unpack_from(data, pos)
        pos += _MD_ENTRY.size
        if pos + klen + vlen > end:
            raise FrameError("truncated metadata entry")
        key = data[pos : pos + klen].decode("ascii")
        pos += klen
        raw = data[pos : pos + vlen]
        pos += vlen
        # binary headers (name ends in -bin) stay bytes, as gRPC hands them to servicers
        md.append((key, raw if key.endswith("-bin") else raw.decode("utf-8")))
    return tuple(md)


def request_frame(call_id: int, method: int, metadata: bytes, payload: bytes) -> bytes:
    return REQUEST.pack(len(payload), call_id, method, len(metadata)) + metadata + payload


def response_frame(call_id: int, status: int, payload: bytes) -> bytes:
    return RESPONSE.pack(len(payload), call_id, status) + payload


class RequestReader:
    """Splits the member's incoming byte stream into (call_id, method, metadata, payload)."""

    def __init__(self, max_payload: int) -> None:
        self._buf = bytearray()
        self._max = max_payload

    def feed(self, data: bytes) -> list[tuple[int, int, bytes, bytes]]:
        buf = self._buf
        buf += data
        frames: list[tuple[int, int, bytes, bytes]] = []
        pos = 0
        size = len(buf)
        hdr = REQUEST.size
        while size - pos >= hdr:
            plen, call_id, method, mdlen = REQUEST.unpack_from(buf, pos)
            if plen > self._max:
                raise FrameError(f"request frame of {plen} bytes exceeds {self._max}")
            end = pos + hdr + mdlen + plen
            if end > size:
                break
            md_start = pos + hdr
            frames.append((call_id, method, bytes(buf[md_start : md_start + mdlen]),
                           bytes(buf[md_start + mdlen : end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames


class ResponseReader:
    """Splits a front-end's incoming byte stream into (call_id, status, payload)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self._buf
        buf += data
        frames: list[tuple[int, int, bytes]] = []
        pos = 0
        size = len(buf)
        hdr = RESPONSE.size
        while size - pos >= hdr:
            plen, call_id, status = RESPONSE.unpack_from(buf, pos)
            end = pos + hdr + plen
            if end > size:
                break
            frames.append((call_id, status, bytes(buf[pos + hdr : end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames
