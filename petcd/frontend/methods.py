"""The client API's method table, the same in the member and in every front-end.

Both sides build it from the protobuf descriptors of the services a client may call, sorted by
path, so a method is named on the link by its index; the digest lets a front-end refuse to talk
to a member built from other descriptors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

from google.protobuf.descriptor import ServiceDescriptor

from petcd.proto.etcdserverpb import rpc_pb2
from petcd.proto.v3electionpb import v3election_pb2
from petcd.proto.v3lockpb import v3lock_pb2


class Arity(Enum):
    UNARY_UNARY = "unary_unary"
    UNARY_STREAM = "unary_stream"
    STREAM_UNARY = "stream_unary"
    STREAM_STREAM = "stream_stream"


@dataclass(frozen=True, slots=True)
class Method:
    index: int
    service: str  # full service name, e.g. etcdserverpb.KV
    name: str  # e.g. Put
    arity: Arity

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


# Unary calls that may wait for a long time (for a lock, for leadership). A front-end relays them
# over its gRPC channel to the member, as it does streams, instead of over the link: the link has
# no cancellation, and a Lock or Campaign the client gave up must end on the member (which then
# deletes its key) rather than wait on for nobody.
BLOCKING_UNARY = frozenset({"/v3lockpb.Lock/Lock", "/v3electionpb.Election/Campaign"})


def client_services() -> list[ServiceDescriptor]:
    services: list[ServiceDescriptor] = []
    for module in (rpc_pb2, v3lock_pb2, v3election_pb2):
        services.extend(module.DESCRIPTOR.services_by_name.values())
    return services


def _arity(client_streaming: bool, server_streaming: bool) -> Arity:
    if client_streaming:
        return Arity.STREAM_STREAM if server_streaming else Arity.STREAM_UNARY
    return Arity.UNARY_STREAM if server_streaming else Arity.UNARY_UNARY


def _build() -> tuple[Method, ...]:
    found = sorted(
        (s.full_name, m.name, _arity(m.client_streaming, m.server_streaming))
        for s in client_services()
        for m in s.methods
    )
    return tuple(Method(i, svc, name, arity) for i, (svc, name, arity) in enumerate(found))


METHODS: tuple[Method, ...] = _build()
BY_PATH: dict[str, Method] = {m.path: m for m in METHODS}
DIGEST: bytes = hashlib.sha256("\n".join(f"{m.path} {m.arity.value}" for m in METHODS).encode()).digest()[:16]
