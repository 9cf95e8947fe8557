"""Differential steps over gRPC, for request fields etcdctl 3.4 cannot set.

etcdctl 3.4 has no ``--count-only``, no min/max mod/create revision filters, panics on lease
compares in ``txn`` and cannot build nested txns; a ``Call`` sends the request itself. A request is
built per server by a function of a ``Ctx`` (key prefix, base revision, captured lease ids), since
revisions and lease ids differ between servers. Responses become plain dicts (field name -> value,
unset fields left out as in etcd's JSON) and go through the same ``Normaliser`` as etcdctl's json.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness.ctl import Normaliser
from tests.harness.procs import Server

CALL_TIMEOUT = 10.0


@dataclass
class Ctx:
    """What a request may depend on, for one server."""

    prefix: bytes
    rev: int
    vars: dict[str, int] = field(default_factory=dict)

    def k(self, name: str = "") -> bytes:
        return self.prefix + name.encode()

    def prefix_end(self, name: str = "") -> bytes:
        """The range_end that makes [k(name), end) the keys starting with k(name)."""
        key = bytearray(self.k(name))
        while key and key[-1] == 0xFF:
            key.pop()
        key[-1] += 1
        return bytes(key)


@dataclass(frozen=True)
class Call:
    method: str  # "KV.Range", "Lease.LeaseGrant", ...
    request: Callable[[Ctx], Message]
    code: str = "OK"  # the gRPC status real etcd must answer with
    capture: str | None = None  # save the response's ID field under this name (lease grant)
    note: str = ""


@dataclass(frozen=True)
class GrpcScenario:
    name: str
    calls: tuple[Call, ...]


def message_dict(msg: Message) -> dict[str, Any]:
    """Set fields only, bytes as text, enums by name: the shape etcd's JSON output has."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        out[fd.name] = [_field(fd, v) for v in value] if fd.is_repeated else _field(fd, value)
    return out


def _field(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return message_dict(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return value.decode("utf-8", "backslashreplace")
    if fd.type == FieldDescriptor.TYPE_ENUM and fd.enum_type is not None:
        known = fd.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    return value


class GrpcSide:
    def __init__(self, server: Server, prefix: str) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(server.endpoint)
        self.stubs: dict[str, Any] = {
            "KV": pb_grpc.KVStub(self.channel),  # type: ignore[no-untyped-call]
            "Lease": pb_grpc.LeaseStub(self.channel),  # type: ignore[no-untyped-call]
        }
        res = self.stubs["KV"].Range(pb.RangeRequest(key=prefix.encode()), timeout=CALL_TIMEOUT)
        self.ctx = Ctx(prefix.encode(), res.header.revision)
        self.norm = Normaliser.for_servers([server], base_revision=self.ctx.rev)

    def call(self, call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (raw, normalised) outcome: {"code": ..., "response" | "details": ...}."""
        service, method = call.method.split(".")
        request = call.request(self.ctx)
        try:
            response = getattr(self.stubs[service], method)(request, timeout=CALL_TIMEOUT)
            raw: dict[str, Any] = {"code": "OK", "response": message_dict(response)}
            if call.capture is not None:
                self.ctx.vars[call.capture] = int(response.ID)
        except grpc.RpcError as err:
            raw = {"code": err.code().name, "details": err.details()}
        return raw, self.norm.json_value(json.loads(json.dumps(raw)))

    def close(self) -> None:
        self.channel.close()


@dataclass(frozen=True)
class GrpcMismatch:
    index: int
    call: Call
    expected: dict[str, Any]
    actual: dict[str, Any]

    def describe(self, target_label: str) -> str:
        exp = json.dumps(self.expected, indent=1).splitlines(keepends=True)
        act = json.dumps(self.actual, indent=1).splitlines(keepends=True)
        diff = "".join(difflib.unified_diff(exp, act, "etcd", target_label))
        return f"call {self.index}: {self.call.method} {self.call.note}\n{diff}"


def run_grpc_scenario(sc: GrpcScenario, reference: Server, target: Server) -> list[GrpcMismatch]:
    ref = GrpcSide(reference, f"{sc.name}/")
    tgt = GrpcSide(target, f"{sc.name}/")
    try:
        mismatches = []
        for i, call in enumerate(sc.calls, 1):
            ref_raw, ref_norm = ref.call(call)
            if ref_raw["code"] != call.code:
                raise AssertionError(
                    f"scenario {sc.name!r} call {i} ({call.method} {call.note}) is wrong against real etcd: "
                    f"declared {call.code}, got {ref_raw}"
                )
            _, tgt_norm = tgt.call(call)
            if tgt_norm != ref_norm:
                mismatches.append(GrpcMismatch(i, call, ref_norm, tgt_norm))
        return mismatches
    finally:
        ref.close()
        tgt.close()


def assert_same_grpc(sc: GrpcScenario, reference: Server, target: Server) -> None:
    mismatches = run_grpc_scenario(sc, reference, target)
    if mismatches:
        shown = "\n".join(m.describe(target.label) for m in mismatches[:5])
        raise AssertionError(
            f"scenario {sc.name!r}: {len(mismatches)} of {len(sc.calls)} calls differ between etcd and "
            f"{target.label}\n{shown}"
        )
