"""The v3 JSON gateway (``--enable-grpc-gateway``): etcd's grpc-gateway routes, over the member's API.

A POST to ``/v3/kv/put`` (or ``/v3beta/kv/put``) carries a ``PutRequest`` as JSON; the gateway
turns it into the protobuf request, calls the same servicer method a gRPC client reaches, and
answers the response as JSON the way etcd's gateway (grpc-gateway v1 with jsonpb and original
field names) writes it: proto field names, 64-bit integers as strings, bytes in base64, zero
values left out. A failed call answers ``{"error":..,"code":..,"message":..}`` with the HTTP
status grpc-gateway gives that gRPC code. ``Authorization`` reaches the servicers as the ``token``
metadata etcd reads, and ``Grpc-Metadata-<name>`` headers as metadata ``<name>``.

Unary methods run through the member's dispatcher (``Unary``: method path, metadata, request
bytes -> status and bytes), so codes and texts are exactly gRPC's. Streams (watch, lease
keep-alive, snapshot, election observe) run over a gRPC channel to the member's own server
(``channel``): the request body is read as a sequence of JSON objects, each response goes out as
one chunk ``{"result":...}\n``, and a failure as ``{"error":{...}}\n``.

A body is read as Go reads it (``petcd.http.gojson``): its first JSON value only, with Go's texts
for syntax errors and the common type mistakes; a rarer mistake is refused with code 3 as etcd
does, but with protobuf's text rather than Go's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from petcd.http.gojson import GoJSONError, check_fields, first_value, split_value
from petcd.http.responses import json_response, text_error
from petcd.http.server import BodyTooLarge, Request, Response, Streamed
from petcd.proto.etcdserverpb import rpc_pb2
from petcd.proto.v3electionpb import v3election_pb2
from petcd.proto.v3lockpb import v3lock_pb2

__all__ = ["ROUTES", "Gateway", "Metadata", "Unary"]

Metadata = tuple[tuple[str, str], ...]
Unary = Callable[[str, Metadata, bytes], Awaitable[tuple[int, bytes]]]

# grpc-gateway v1's HTTPStatusFromCode
HTTP_STATUS = {
    0: 200, 1: 408, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400,
    12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}
_STATUS_TEXT = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
    409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

# path under /v3 -> (service, method), as etcd 3.5.1's gateway registers them (checked on the
# binary: HashKV has no route of its own, /v3/maintenance/hash is Hash)
_ROUTES: dict[str, tuple[str, str]] = {
    "/kv/range": ("etcdserverpb.KV", "Range"), "/kv/put": ("etcdserverpb.KV", "Put"),
    "/kv/deleterange": ("etcdserverpb.KV", "DeleteRange"), "/kv/txn": ("etcdserverpb.KV", "Txn"),
    "/kv/compaction": ("etcdserverpb.KV", "Compact"),
    "/watch": ("etcdserverpb.Watch", "Watch"),
    "/lease/grant": ("etcdserverpb.Lease", "LeaseGrant"),
    "/lease/revoke": ("etcdserverpb.Lease", "LeaseRevoke"),
    "/kv/lease/revoke": ("etcdserverpb.Lease", "LeaseRevoke"),
    "/lease/keepalive": ("etcdserverpb.Lease", "LeaseKeepAlive"),
    "/lease/timetolive": ("etcdserverpb.Lease", "LeaseTimeToLive"),
    "/kv/lease/timetolive": ("etcdserverpb.Lease", "LeaseTimeToLive"),
    "/lease/leases": ("etcdserverpb.Lease", "LeaseLeases"),
    "/kv/lease/leases": ("etcdserverpb.Lease", "LeaseLeases"),
    "/cluster/member/add": ("etcdserverpb.Cluster", "MemberAdd"),
    "/cluster/member/remove": ("etcdserverpb.Cluster", "MemberRemove"),
    "/cluster/member/update": ("etcdserverpb.Cluster", "MemberUpdate"),
    "/cluster/member/list": ("etcdserverpb.Cluster", "MemberList"),
    "/cluster/member/promote": ("etcdserverpb.Cluster", "MemberPromote"),
    "/maintenance/alarm": ("etcdserverpb.Maintenance", "Alarm"),
    "/maintenance/status": ("etcdserverpb.Maintenance", "Status"),
    "/maintenance/defragment": ("etcdserverpb.Maintenance", "Defragment"),
    "/maintenance/hash": ("etcdserverpb.Maintenance", "Hash"),
    "/maintenance/snapshot": ("etcdserverpb.Maintenance", "Snapshot"),
    "/maintenance/transfer-leadership": ("etcdserverpb.Maintenance", "MoveLeader"),
    "/maintenance/downgrade": ("etcdserverpb.Maintenance", "Downgrade"),
    "/auth/enable": ("etcdserverpb.Auth", "AuthEnable"), "/auth/disable": ("etcdserverpb.Auth", "AuthDisable"),
    "/auth/status": ("etcdserverpb.Auth", "AuthStatus"),
    "/auth/authenticate": ("etcdserverpb.Auth", "Authenticate"),
    "/auth/user/add": ("etcdserverpb.Auth", "UserAdd"), "/auth/user/get": ("etcdserverpb.Auth", "UserGet"),
    "/auth/user/list": ("etcdserverpb.Auth", "UserList"), "/auth/user/delete": ("etcdserverpb.Auth", "UserDelete"),
    "/auth/user/changepw": ("etcdserverpb.Auth", "UserChangePassword"),
    "/auth/user/grant": ("etcdserverpb.Auth", "UserGrantRole"),
    "/auth/user/revoke": ("etcdserverpb.Auth", "UserRevokeRole"),
    "/auth/role/add": ("etcdserverpb.Auth", "RoleAdd"), "/auth/role/get": ("etcdserverpb.Auth", "RoleGet"),
    "/auth/role/list": ("etcdserverpb.Auth", "RoleList"), "/auth/role/delete": ("etcdserverpb.Auth", "RoleDelete"),
    "/auth/role/grant": ("etcdserverpb.Auth", "RoleGrantPermission"),
    "/auth/role/revoke": ("etcdserverpb.Auth", "RoleRevokePermission"),
    "/lock/lock": ("v3lockpb.Lock", "Lock"), "/lock/unlock": ("v3lockpb.Lock", "Unlock"),
    "/election/campaign": ("v3electionpb.Election", "Campaign"),
    "/election/proclaim": ("v3electionpb.Election", "Proclaim"),
    "/election/leader": ("v3electionpb.Election", "Leader"),
    "/election/observe": ("v3electionpb.Election", "Observe"),
    "/election/resign": ("v3electionpb.Election", "Resign"),
}
# unary calls that may wait a long time: abandoned (cancelled) when the HTTP client goes away
_BLOCKING = frozenset({"/v3lockpb.Lock/Lock", "/v3electionpb.Election/Campaign"})


@dataclass(frozen=True, slots=True)
class Route:
    path: str  # the gRPC method path, /etcdserverpb.KV/Range
    request: type[Message]
    response: type[Message]
    client_streaming: bool
    server_streaming: bool


def _routes() -> dict[str, Route]:
    methods: dict[str, MethodDescriptor] = {}
    for module in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for svc in module.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                methods[f"{svc.full_name}/{m.name}"] = m
    out: dict[str, Route] = {}
    for http_path, (service, name) in _ROUTES.items():
        m = methods[f"{service}/{name}"]
        out[http_path] = Route(f"/{service}/{name}", GetMessageClass(m.input_type), GetMessageClass(m.output_type),
                               m.client_streaming, m.server_streaming)
    return out


ROUTES = _routes()


def to_json(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def dumps(obj: object) -> bytes:
    # Go's encoding/json: compact, UTF-8 kept, <, > and & escaped for HTML safety
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode())


def error_body(code: int, message: str) -> bytes:
    body: dict[str, object] = {}
    if message:
        body["error"] = message
    if code:
        body["code"] = code
    if message:
        body["message"] = message
    return dumps(body)


def error_response(code: int, message: str) -> Response:
    return json_response(HTTP_STATUS.get(code, 500), error_body(code, message))


def stream_error(code: int, message: str) -> bytes:
    status = HTTP_STATUS.get(code, 500)
    inner: dict[str, object] = {}
    if code:
        inner["grpc_code"] = code
    inner["http_code"] = status
    if message:
        inner["message"] = message
    inner["http_status"] = _STATUS_TEXT.get(status, "")
    return dumps({"error": inner}) + b"\n"


def metadata_of(req: Request) -> Metadata:
    md: list[tuple[str, str]] = []
    for k, v in req.headers:
        if k == "authorization":
            md.append(("token", v))
        elif k.startswith("grpc-metadata-"):
            md.append((k[len("grpc-metadata-"):], v))
    return tuple(md)


class ParseFailed(Exception):
    pass


def parse(route: Route, body: bytes) -> Message:
    msg = route.request()
    try:
        obj = first_value(body.decode("utf-8", "replace"))
        if obj is None:
            return msg
        check_fields(route.request.DESCRIPTOR, obj)
        json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
    except GoJSONError as exc:
        raise ParseFailed(str(exc)) from None
    except json_format.ParseError as exc:  # what Go's texts above do not cover: protobuf's own
        raise ParseFailed(str(exc)) from None
    return msg


_SUCCESS_HEADERS = [("Grpc-Metadata-Content-Type", "application/grpc")]


class Gateway:
    """Answers ``/v3/...`` requests (the path given without its /v3 or /v3beta prefix)."""

    def __init__(self, unary: Unary, channel: Callable[[], grpc.aio.Channel]) -> None:
        self._unary = unary
        self._channel = channel

    async def __call__(self, req: Request, path: str) -> Response | Streamed:
        route = ROUTES.get(path)
        if route is None:
            return text_error(404, "Not Found")
        if req.method != "POST":
            return text_error(405, "Method Not Allowed")
        md = metadata_of(req)
        if route.client_streaming or route.server_streaming:
            return await self._stream(req, route, md)
        try:
            msg = parse(route, await req.read())
        except ParseFailed as exc:
            return error_response(3, str(exc))
        except BodyTooLarge:
            return error_response(8, "request body too large")
        call = self._unary(route.path, md, msg.SerializeToString())
        if route.path in _BLOCKING:
            status, out = await _unless_closed(req, call)
        else:
            status, out = await call
        if status != 0:
            return error_response(status, out.decode("utf-8", "replace"))
        return json_response(200, dumps(to_json(route.response.FromString(out))), list(_SUCCESS_HEADERS))

    async def _stream(self, req: Request, route: Route, md: Metadata) -> Response | Streamed:
        channel = self._channel()
        serialize, deserialize = route.request.SerializeToString, route.response.FromString
        if route.client_streaming:
            body = _BodyObjects(req, route)
            try:
                first = await body.next()
            except ParseFailed as exc:
                # as etcd's gateway: a first message that does not parse fails the call (Unknown)
                return error_response(2, str(exc))
            call: Any = channel.stream_stream(route.path, request_serializer=serialize,  # type: ignore[call-arg]
                                              response_deserializer=deserialize)(metadata=md)
            pump = asyncio.create_task(_pump(req, body, first, call))
        else:
            try:
                first = parse(route, await req.read())
            except ParseFailed as exc:
                return error_response(3, str(exc))
            call = channel.unary_stream(route.path, request_serializer=serialize,
                                        response_deserializer=deserialize)(first, metadata=md)
            pump = asyncio.create_task(_watch_close(req, call))
        return Streamed(200, [("Content-Type", "application/json"), *_SUCCESS_HEADERS], _responses(call, pump))


async def _unless_closed(req: Request, call: Awaitable[tuple[int, bytes]]) -> tuple[int, bytes]:
    task = asyncio.ensure_future(call)
    closed = asyncio.ensure_future(req.wait_closed())
    try:
        await asyncio.wait((task, closed), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            return 1, b"context canceled"
        return task.result()
    finally:
        closed.cancel()


class _BodyObjects:
    """The request messages of a streaming call: the JSON objects of the body, in turn."""

    def __init__(self, req: Request, route: Route) -> None:
        self._chunks = req.chunks()
        self._route = route
        self._buf = ""
        self._ended = False

    async def next(self) -> Message | None:
        """The next message, None at the end of the body; ParseFailed with Go's text."""
        while True:
            try:
                obj, end = split_value(self._buf)
            except GoJSONError as exc:
                if str(exc) != "unexpected EOF" or self._ended:
                    raise ParseFailed(str(exc)) from None
                obj, end = None, -1
            if end >= 0 and (obj is not None or (self._buf[end:].strip() == "" and self._ended)):
                self._buf = self._buf[end:]
                if obj is None:
                    return None
                msg = self._route.request()
                try:
                    check_fields(self._route.request.DESCRIPTOR, obj)
                    json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
                except (GoJSONError, json_format.ParseError) as exc:
                    raise ParseFailed(str(exc)) from None
                return msg
            if self._ended:
                return None
            try:
                self._buf += (await anext(self._chunks)).decode("utf-8", "replace")
            except StopAsyncIteration:
                self._ended = True


async def _pump(req: Request, body: _BodyObjects, first: Message | None, call: Any) -> None:
    """Copy the request messages to the gRPC stream; when the body ends (or a later message does
    not parse, which etcd's gateway only logs), wait for the client to close its connection and
    then end the call."""
    try:
        msg = first
        while msg is not None:
            await call.write(msg)
            try:
                msg = await body.next()
            except ParseFailed:
                msg = None
        await call.done_writing()
        await req.wait_closed()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError, ConnectionError):
        pass
    call.cancel()


async def _watch_close(req: Request, call: Any) -> None:
    with contextlib.suppress(ConnectionError):
        await req.wait_closed()
    call.cancel()


async def _responses(call: Any, pump: asyncio.Task[None]) -> AsyncIterator[bytes]:
    try:
        async for resp in call:
            yield dumps({"result": to_json(resp)}) + b"\n"
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            yield stream_error(exc.code().value[0], exc.details() or "")
    finally:
        call.cancel()
        pump.cancel()
        # the pump reads the connection: it must be gone before the server reads the next request
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
