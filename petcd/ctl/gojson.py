"""JSON as etcdctl 3.5 prints it: Go's encoding/json applied to etcd's generated Go structs.

That means: fields in declaration order, named as in the .proto, empty values left out
(``omitempty``), bytes in base64, enums as numbers, a oneof as ``{"Request": {"request_put": ...}}``
(the Go interface field), and Go's string escaping (``<``, ``>``, ``&`` as ``\\u003c``...).
Fields petcd's protocol has and etcd 3.5.1's structs do not are left out.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

# (message full name, field name) that etcd 3.5.1's Go structs do not have.
NOT_IN_351 = {("etcdserverpb.HashKVResponse", "hash_revision")}


class Raw:
    """Text put into the output as it is (an already encoded JSON value)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def message_value(msg: Message) -> dict[str, Any]:
    """The Go struct of msg as an ordered mapping of JSON names to values (omitempty applied)."""
    out: dict[str, Any] = {}
    desc = msg.DESCRIPTOR
    done_oneofs: set[str] = set()
    for fd in desc.fields:
        if (desc.full_name, fd.name) in NOT_IN_351:
            continue
        oneof = fd.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):  # "_x" is proto3 optional's
            if oneof.name in done_oneofs:
                continue
            done_oneofs.add(oneof.name)
            which = msg.WhichOneof(oneof.name)
            if which is None:
                out[_camel(oneof.name)] = None  # a nil interface is not omitted by omitempty
                continue
            inner = desc.fields_by_name[which]
            out[_camel(oneof.name)] = {inner.name: _field(inner, getattr(msg, which))}
            continue
        value = getattr(msg, fd.name)
        if fd.is_repeated:
            if len(value) == 0:
                continue
            out[fd.name] = [_field(fd, v) for v in value]
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if not msg.HasField(fd.name):
                continue
            out[fd.name] = message_value(value)
            continue
        if not value:
            continue
        out[fd.name] = _field(fd, value)
    return out


def _field(fd: Any, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return message_value(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def encode(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Message):
        return encode(message_value(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return '"' + base64.b64encode(value).decode() + '"'
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{go_string(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
        "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_string(text: str) -> str:
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch in _ESC:
            out.append(_ESC[ch])
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:  # an invalid UTF-8 byte: Go writes the replacement character
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
