"""Registering a servicer on a gRPC server, with etcd's answer to a request that does not parse.

The generated ``add_*Servicer_to_server`` functions let a parse error escape as UNKNOWN
("Unexpected <class 'DecodeError'>"); etcd answers INTERNAL "grpc: error unmarshalling request:
...". Registering from the descriptors instead gives every unary method a parser that turns the
failure into that status, the same text the front-end link uses.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass


def unmarshal_error(exc: Exception) -> str:
    return f"grpc: error unmarshalling request: {exc}"


class _Undecodable:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    return deserialize


def _checked(fn: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    @functools.wraps(fn)
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if type(request) is _Undecodable:
            await context.abort(grpc.StatusCode.INTERNAL, unmarshal_error(request.error))
        return await fn(request, context)

    return handle


def add_servicer(server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
    """Serve ``servicer``'s methods of ``service`` on ``server`` (as the generated code would)."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in service.methods:
        parse = GetMessageClass(m.input_type).FromString
        serialize = GetMessageClass(m.output_type).SerializeToString
        fn = getattr(servicer, m.name)
        if not m.client_streaming and not m.server_streaming:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                _checked(fn), request_deserializer=_lenient(parse), response_serializer=serialize)
        elif not m.client_streaming:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=parse, response_serializer=serialize)
        elif not m.server_streaming:
            handlers[m.name] = grpc.stream_unary_rpc_method_handler(
                fn, request_deserializer=parse, response_serializer=serialize)
        else:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(
                fn, request_deserializer=parse, response_serializer=serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
