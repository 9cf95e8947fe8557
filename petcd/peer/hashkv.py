"""The peers' KV hashes for the corruption checks (petcd.server.corruption): HashKV at a revision,
asked over each member's peer URLs, which serve the client API too (etcd asks its peers' HTTP
endpoint /members/hashkv; petcd's peers speak gRPC). Each member's URLs are tried in turn until
one answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server.corruption import PeerHash, PeerHashes

# (peer URL) -> a channel to it; TLS peers get one with the peer credentials
ChannelFor = Callable[[str], grpc.aio.Channel]


def insecure_channel_for(url: str) -> grpc.aio.Channel:
    scheme, _, rest = url.partition("://")
    if scheme == "https":
        raise ValueError(f"{url}: an https peer URL needs TLS credentials")
    return grpc.aio.insecure_channel(rest.rstrip("/"))


def _failure(exc: grpc.aio.AioRpcError) -> str:
    details = exc.details() or ""
    if "required revision has been compacted" in details:
        return "compacted"
    if "required revision is a future revision" in details:
        return "future"
    return f"{exc.code().name}: {details}"


def peer_hashes(channel_for: ChannelFor, timeout: float) -> PeerHashes:
    """A PeerHashes that asks every peer at once, each for at most ``timeout`` seconds per URL."""

    async def one(member_id: int, urls: list[str], rev: int) -> PeerHash:
        failure = "no peer URLs"
        for url in urls:
            try:
                channel = channel_for(url)
            except ValueError as exc:
                failure = str(exc)
                continue
            async with channel:
                try:
                    resp = await pb_grpc.MaintenanceStub(channel).HashKV(  # type: ignore[no-untyped-call]
                        pb.HashKVRequest(revision=rev), timeout=timeout)
                except grpc.aio.AioRpcError as exc:
                    failure = _failure(exc)
                    if failure in ("compacted", "future"):
                        break  # the member answered: its other URLs would say the same
                    continue
            return PeerHash(resp.header.member_id or member_id, tuple(urls), resp.hash, resp.header.revision,
                            resp.compact_revision)
        return PeerHash(member_id, tuple(urls), failure=failure)

    async def ask(peers: dict[int, list[str]], rev: int) -> list[PeerHash]:
        return list(await asyncio.gather(*(one(mid, urls, rev) for mid, urls in peers.items())))

    return ask
