"""A member wired to the real peer transport: ``build(settings, clock)``.

The server sees its transport only through ``petcd.server.peering.Transport``; this is where the
two meet (the peer layer sits above the server), for the command and for tests.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from petcd.clock import Clock
from petcd.config.settings import ServerSettings
from petcd.peer.config import PeerConfig
from petcd.peer.dial import PeerDialer
from petcd.peer.discovery import discover_cluster
from petcd.peer.transport import PeerTransport
from petcd.server.etcdserver import EtcdServer
from petcd.server.member import build_member
from petcd.server.peering import PeerHandlers


@dataclass(frozen=True, slots=True)
class PeeredMember:
    server: EtcdServer
    transport: PeerTransport  # serve it on the peer URL (petcd.peer.add_to_server)


async def build(settings: ServerSettings, clock: Clock, rand: random.Random | None = None,
                dialer: PeerDialer | None = None) -> PeeredMember:
    """build_member with a PeerTransport on ``clock`` (backoff jitter from ``rand``); ``dialer``
    makes the channels to peers (and to the cluster a joining member asks), TLS for https."""
    dialer = dialer or PeerDialer()
    rand = rand if rand is not None else random.Random()
    made: list[PeerTransport] = []

    def make_transport(h: PeerHandlers) -> PeerTransport:
        transport = PeerTransport(
            h.member_id,
            h.cluster_id,
            on_messages=h.on_messages,
            on_snapshot=h.on_snapshot,
            report_unreachable=h.report_unreachable,
            report_snapshot=h.report_snapshot,
            snapshot_source=h.snapshot_source,
            snapshot_dir=h.snapshot_dir,
            config=PeerConfig(max_batch_bytes=h.max_batch_bytes),
            on_removed=h.on_removed,
            cluster_version=h.cluster_version,
            clock=clock,
            rand=rand,
            dialer=dialer,
        )
        made.append(transport)
        return transport

    discover = functools.partial(discover_cluster, dialer=dialer)
    server = await build_member(settings, clock, make_transport, discover, rand)
    return PeeredMember(server, made[0])
