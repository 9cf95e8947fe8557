"""Registering a servicer on a gRPC server, with etcd's answer to a request that does not parse.

The generated ``add_*Servicer_to_server`` functions let a parse error escape as UNKNOWN
("Unexpected <class 'DecodeError'>"); etcd answers INTERNAL "grpc: error unmarshalling request:
...". Registering from the descriptors instead gives every unary method a parser that hands the
failure to the method's ``unary`` wrapper, which answers with that status (the text the
front-end link uses too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from petcd.api.grpcerr import Undecodable


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Undecodable(exc)

    return deserialize


class PathHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in the stubs
    """Method handlers looked up by full path (``/service/Method``) in one dict.

    Servers here register no methods with gRPC ("registered methods"): grpc.aio's server keeps
    one pending request future per registered method and hands them all to ``asyncio.wait``
    after every call, which with the ~50 methods of the etcd API was the largest part of a
    front-end's Python time per call (docs/benchmarks.md, 2026-12-07). Unregistered calls all
    come through one generic request, and this finds their handler with one lookup.
    """

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._handlers = handlers

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._handlers.get(handler_call_details.method)


def add_servicer(server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
    """Serve ``servicer``'s methods of ``service`` on ``server`` (as the generated code would,
    but without registering the methods: see ``PathHandler``)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for m in service.methods:
        parse = GetMessageClass(m.input_type).FromString
        serialize = GetMessageClass(m.output_type).SerializeToString
        fn = getattr(servicer, m.name)
        if not m.client_streaming and not m.server_streaming:
            if not getattr(fn, "petcd_unary", False):
                raise TypeError(f"{service.full_name}.{m.name} is not wrapped by petcd.api.grpcerr.unary")
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=_lenient(parse), response_serializer=serialize)
        elif not m.client_streaming:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=parse, response_serializer=serialize)
        elif not m.server_streaming:
            handlers[m.name] = grpc.stream_unary_rpc_method_handler(
                fn, request_deserializer=parse, response_serializer=serialize)
        else:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(
                fn, request_deserializer=parse, response_serializer=serialize)
    server.add_generic_rpc_handlers((PathHandler({f"/{service.full_name}/{name}": h for name, h in handlers.items()}),))
