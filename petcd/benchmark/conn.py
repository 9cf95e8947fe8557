"""Connections to the cluster under test: endpoints, TLS, ``--user``, ``--target-leader``.

Every connection is its own TCP connection (a local subchannel pool each), as every clientv3
client in etcd's benchmark is; connections go to the endpoints in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc

# Go's names of the status codes, as grpc-go prints an error: "rpc error: code = Unavailable desc = ..."
_GO_CODES = {code: "".join(w.capitalize() for w in code.name.split("_")) for code in grpc.StatusCode}
_GO_CODES[grpc.StatusCode.OK] = "OK"
_GO_CODES[grpc.StatusCode.CANCELLED] = "Canceled"
# etcd's own error texts reach clientv3 users as they are (rpctypes); so do they here
_ETCD_PREFIXES = ("etcdserver: ", "mvcc: ", "auth: ", "lease: ")

# etcd's clientv3 lets a response be as large as an int32 allows
_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.max_send_message_length", 2**31 - 1),
)


# grpc-stubs lacks these: the end-of-stream marker, and types for the generated stubs
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


def stub(factory: Any, channel: grpc.aio.Channel) -> Any:
    """A generated stub (``rpc.KVStub`` ...) on a channel."""
    return factory(channel)


class DialError(Exception):
    """No connection to an endpoint could be made in time."""


def error_text(exc: BaseException) -> str:
    """What a failed request counts as in the error distribution (clientv3's ``err.Error()``)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details = exc.details() or ""
        if details.startswith(_ETCD_PREFIXES):
            return details
        return f"rpc error: code = {_GO_CODES.get(exc.code(), str(exc.code()))} desc = {details}"
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class TLSFiles:
    cert: str = ""
    key: str = ""
    cacert: str = ""

    @property
    def given(self) -> bool:
        return bool(self.cert or self.key or self.cacert)

    def credentials(self) -> grpc.ChannelCredentials:
        root = Path(self.cacert).read_bytes() if self.cacert else None
        key = Path(self.key).read_bytes() if self.key else None
        chain = Path(self.cert).read_bytes() if self.cert else None
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


@dataclass(frozen=True)
class Target:
    """One endpoint: ``host:port`` to dial, and whether it speaks TLS."""

    address: str
    secure: bool


def parse_endpoint(text: str, tls: TLSFiles) -> Target:
    """``host:port``, ``http://host:port`` or ``https://host:port`` (TLS flags make a bare one TLS)."""
    ep = text.strip()
    if not ep:
        raise ValueError("empty endpoint")
    scheme, sep, rest = ep.partition("://")
    if sep:
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported endpoint scheme {scheme!r} in {ep!r} (use http:// or https://)")
        address, secure = rest.rstrip("/"), scheme == "https" or tls.given
    else:
        address, secure = ep, tls.given
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"endpoint {ep!r} must be host:port")
    return Target(address, secure)


@dataclass(frozen=True)
class ConnSpec:
    """How to connect; picklable, so worker processes connect by themselves."""

    targets: tuple[Target, ...]
    tls: TLSFiles
    dial_timeout: float
    token: str = ""

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("token", self.token),) if self.token else ()

    def channel(self, n: int) -> grpc.aio.Channel:
        """Connection number ``n`` (they go to the endpoints in turn)."""
        t = self.targets[n % len(self.targets)]
        if t.secure:
            return grpc.aio.secure_channel(t.address, self.tls.credentials(), options=_CHANNEL_OPTIONS)
        return grpc.aio.insecure_channel(t.address, options=_CHANNEL_OPTIONS)


async def wait_connected(channels: Sequence[grpc.aio.Channel], spec: ConnSpec) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), spec.dial_timeout)
    except TimeoutError:
        addrs = ", ".join(t.address for t in spec.targets)
        raise DialError(f"dial error: no connection to {addrs} within {spec.dial_timeout:g}s") from None


async def authenticate(spec: ConnSpec, user: str, password: str) -> ConnSpec:
    """Log in once (clientv3 does the same) and return the spec with the token to send."""
    ch = spec.channel(0)
    try:
        await wait_connected([ch], spec)
        resp = await stub(rpc.AuthStub, ch).Authenticate(pb.AuthenticateRequest(name=user, password=password))
    finally:
        await ch.close(None)
    return ConnSpec(spec.targets, spec.tls, spec.dial_timeout, resp.token)


async def leader_targets(spec: ConnSpec) -> tuple[Target, ...]:
    """``--target-leader``: the leader's client URLs, found from the endpoints' status."""
    errors: list[str] = []
    for n, t in enumerate(spec.targets):
        ch = spec.channel(n)
        try:
            await wait_connected([ch], ConnSpec((t,), spec.tls, spec.dial_timeout))
            status = await stub(rpc.MaintenanceStub, ch).Status(pb.StatusRequest(), metadata=spec.metadata)
            members = await stub(rpc.ClusterStub, ch).MemberList(pb.MemberListRequest(), metadata=spec.metadata)
        except (grpc.aio.AioRpcError, DialError) as exc:
            errors.append(f"{t.address}: {error_text(exc)}")
            continue
        finally:
            await ch.close(None)
        for m in members.members:
            if m.ID == status.leader and m.clientURLs:
                return tuple(parse_endpoint(u, spec.tls) for u in m.clientURLs)
        errors.append(f"{t.address}: no leader with client URLs in the member list")
    raise DialError("failed to find a leader endpoint: " + "; ".join(errors))
