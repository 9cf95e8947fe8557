"""A gRPC client for the Lock and Election tests that records what it sees, normalised.

A scenario runs the same calls against real etcd and against petcd; each call's outcome (its
response, or its status code and text) becomes one line. Revisions are written relative to the
revision the scenario started at, lease ids as L1, L2... in order of appearance (also where they
appear in hex at the end of a lock or candidate key), cluster and member ids and the raft term as
placeholders, so two servers that behave alike give the same lines.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.proto.v3electionpb import v3election_pb2 as epb
from petcd.proto.v3electionpb import v3election_pb2_grpc as epb_grpc
from petcd.proto.v3lockpb import v3lock_pb2_grpc as lockpb_grpc
from tests.harness import Server

T = TypeVar("T")
CALL_TIMEOUT = 20.0
_REVISIONS = {"revision", "create_revision", "mod_revision", "rev", "compact_revision"}
_LEASES = {"lease", "ID"}
_SESSION_SUFFIX = re.compile(rb"/(-?[0-9a-f]{1,16})$")


def status(exc: grpc.RpcError) -> tuple[str, str]:
    """(code name, details) of a failed call. At its deadline, a waiting call of etcd returns the
    context's error, which gRPC-Go sends as UNKNOWN 'context deadline exceeded'; whether that or
    the client's own deadline comes first is a race in etcd, so both read as the client's."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNKNOWN and details == "context deadline exceeded":
        code, details = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
    return code.name, details


class Client:
    def __init__(self, server: Server) -> None:
        self.channel = grpc.insecure_channel(server.endpoint)
        # the generated stubs are untyped
        self.kv: Any = pb_grpc.KVStub(self.channel)  # type: ignore[no-untyped-call]
        self.lease: Any = pb_grpc.LeaseStub(self.channel)  # type: ignore[no-untyped-call]
        self.lock: Any = lockpb_grpc.LockStub(self.channel)  # type: ignore[no-untyped-call]
        self.election: Any = epb_grpc.ElectionStub(self.channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.channel.close()

    def revision(self) -> int:
        rev: int = self.kv.Range(pb.RangeRequest(key=b"\x00"), timeout=CALL_TIMEOUT).header.revision
        return rev

    def grant(self, ttl: int) -> int:
        lease_id: int = self.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=CALL_TIMEOUT).ID
        return lease_id

    def keys(self, prefix: bytes) -> list[bytes]:
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        resp = self.kv.Range(pb.RangeRequest(key=prefix, range_end=end), timeout=CALL_TIMEOUT)
        return [kv.key for kv in resp.kvs]

    def wait_keys(self, prefix: bytes, count: int, timeout: float = 15.0) -> None:
        """Wait until exactly count keys exist under prefix."""
        deadline = time.monotonic() + timeout
        while len(self.keys(prefix)) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} keys under {prefix!r} never seen: {self.keys(prefix)}")
            time.sleep(0.05)


class Recorder:
    """The normalised outcomes of one scenario on one server."""

    def __init__(self, client: Client) -> None:
        self.c = client
        self.base = client.revision()
        self.leases: dict[int, str] = {}
        self.lines: list[str] = []

    # -- recording --------------------------------------------------------------------------------
    def call(self, label: str, fn: Callable[[], T]) -> T | None:
        try:
            resp = fn()
        except grpc.RpcError as exc:
            code, details = status(exc)
            self.lines.append(f"{label}: {code} {details!r}")
            return None
        self.lines.append(f"{label}: OK {self.norm(resp)}")  # type: ignore[arg-type]
        return resp

    def note(self, label: str, value: object) -> None:
        self.lines.append(f"{label}: {self.norm(value) if isinstance(value, Message) else value}")

    def outcome(self, label: str, future: grpc.Future[Any]) -> Any:
        """Record a call started with .future() (waiting up to CALL_TIMEOUT for it)."""
        return self.call(label, lambda: future.result(timeout=CALL_TIMEOUT))

    def lease(self, lease_id: int) -> str:
        if lease_id == 0:
            return "0"
        token = self.leases.get(lease_id)
        if token is None:
            token = self.leases[lease_id] = f"L{len(self.leases) + 1}"
        return token

    def rev(self, value: int) -> str:
        return "0" if value == 0 else f"R{value - self.base:+d}"

    def relrev(self) -> str:
        return self.rev(self.c.revision())

    # -- normalising ------------------------------------------------------------------------------
    def norm(self, msg: Message) -> str:
        parts: list[str] = []
        for fd, value in msg.ListFields():
            if fd.is_repeated:
                items = [self._value(fd, v) for v in value]
                parts.append(f"{fd.name}=[{', '.join(items)}]")
            else:
                parts.append(f"{fd.name}={self._value(fd, value)}")
        return "{" + " ".join(parts) + "}"

    def _value(self, fd: FieldDescriptor, value: Any) -> str:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            return self.norm(value)
        name = fd.name
        if name in _REVISIONS:
            return self.rev(value)
        if name in _LEASES:
            return self.lease(value)
        if name in ("cluster_id", "member_id", "raft_term"):
            return f"<{name}>" if value else "0"
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return self._bytes(value)
        return repr(value)

    def _bytes(self, value: bytes) -> str:
        m = _SESSION_SUFFIX.search(value)
        if m and len(m.group(1)) >= 6:
            text = m.group(1).decode()
            lease_id = -int(text[1:], 16) if text.startswith("-") else int(text, 16)
            return repr(value[: m.start(1)] + b"<" + self.lease(lease_id).encode() + b">")
        return repr(value)


class Observer:
    """An Observe stream read on a thread; messages kept in arrival order."""

    def __init__(self, client: Client, name: bytes, timeout: float = 60.0) -> None:
        self.stream = client.election.Observe(epb.LeaderRequest(name=name), timeout=timeout)
        self.messages: list[epb.LeaderResponse] = []
        self.end: str = ""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for msg in self.stream:
                self.messages.append(msg)
            self.end = "OK"
        except grpc.RpcError as exc:
            self.end = status(exc)[0]

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"observer saw {len(self.messages)} messages, expected {count}")
            time.sleep(0.02)

    def cancel(self) -> None:
        self.stream.cancel()
        self._thread.join(10)


def assert_same(expected: list[str], got: list[str], what: str) -> None:
    if expected != got:
        import difflib

        diff = "\n".join(difflib.unified_diff(expected, got, "etcd 3.5.1", what, lineterm=""))
        raise AssertionError(f"{what} differs from etcd 3.5.1:\n{diff}")
