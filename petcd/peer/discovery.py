"""Discovery for a member that joins an existing cluster (``--initial-cluster-state=existing``):
its own id, the cluster id and the members, asked of the other members' peer URLs (which serve the
client API too)."""

from __future__ import annotations

import grpc

from petcd.peer.dial import PeerDialer
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server.bootstrap import BootstrapError, Member


async def discover_cluster(own_peer_urls: list[str], peers: list[Member], timeout: float = 10.0,
                           dialer: PeerDialer | None = None) -> tuple[int, int, list[Member]]:
    """For a member joining an existing cluster: (its id, the cluster id, the members), asked
    of the other members' peer URLs, which serve the client API too (over TLS for https ones,
    with ``dialer``'s certificates)."""
    dialer = dialer or PeerDialer()
    own = set(own_peer_urls)
    errors_seen: list[str] = []
    for peer in peers:
        if set(peer.peer_urls) & own:
            continue
        for url in peer.peer_urls:
            try:
                await dialer.refresh(url)
                async with dialer.channel(url) as ch:
                    resp = await pb_grpc.ClusterStub(ch).MemberList(  # type: ignore[no-untyped-call]
                        pb.MemberListRequest(), timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                errors_seen.append(f"{url}: {exc.details()}")
                continue
            except ValueError as exc:  # not a peer URL
                errors_seen.append(str(exc))
                continue
            members = [
                Member(m.ID, m.name, list(m.peerURLs), list(m.clientURLs), m.isLearner) for m in resp.members
            ]
            for m in members:
                if set(m.peer_urls) == own:
                    return m.id, resp.header.cluster_id, members
            raise BootstrapError(
                f"this member's peer URLs {sorted(own)} are not in the cluster's member list "
                f"(asked {url}); add it first with `etcdctl member add <name> --peer-urls=...`"
            )
    raise BootstrapError(
        "cannot join the existing cluster: no member in --initial-cluster answered"
        + (f" ({'; '.join(errors_seen)})" if errors_seen else "")
    )
