"""Channels to other members' peer URLs: plain for ``http://``, TLS for ``https://``.

An https peer is verified against --peer-trusted-ca-file (the system's roots without one) and
is shown this member's peer client certificate (--peer-client-cert-file, else --peer-cert-file)
for --peer-client-cert-auth. With --peer-auto-tls no CA signed the peers' certificates: etcd
then skips verification; gRPC cannot, so ``refresh`` fetches the certificate a peer presents
and the channel trusts exactly that one (still encrypted end to end; as etcd, not
authenticated). ``refresh`` is shared by every caller (links, probes, discovery), so whoever
holds a channel compares ``pin`` with the one it was built with rather than relying on who
happened to fetch first.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

from petcd.peer.wire import grpc_target
from petcd.tls import KeyPair, channel_credentials, fetch_server_certificate

log = logging.getLogger("petcd.peer")


@dataclass(frozen=True, slots=True)
class PeerTLS:
    ca_pem: bytes | None  # None: the system's roots
    pair: KeyPair | None  # the client certificate shown to peers
    pin_server_cert: bool  # --peer-auto-tls: trust the certificate each peer presents


class PeerDialer:
    def __init__(self, tls: PeerTLS | None = None, fetch_timeout: float = 2.0) -> None:
        self.tls = tls
        self.fetch_timeout = fetch_timeout
        self._pinned: dict[str, tuple[bytes, str]] = {}  # target -> (certificate, name it is valid for)

    @staticmethod
    def is_tls(url: str) -> bool:
        return urlsplit(url).scheme in ("https", "unixs")

    def pin(self, url: str) -> tuple[bytes, str] | None:
        """The certificate ``channel`` would trust for ``url`` with --peer-auto-tls, if fetched."""
        return self._pinned.get(grpc_target(url))

    def channel(self, url: str, options: list[tuple[str, int]] | None = None) -> grpc.aio.Channel:
        """A channel to the peer at ``url`` (no I/O yet)."""
        target = grpc_target(url)
        opts: list[tuple[str, int | str]] = list(options or [])
        if not self.is_tls(url):
            return grpc.aio.insecure_channel(target, options=opts)
        tls = self.tls or PeerTLS(None, None, False)
        ca = tls.ca_pem
        if tls.pin_server_cert:
            pinned = self._pinned.get(target)
            if pinned is not None:
                ca = pinned[0]
                opts.append(("grpc.ssl_target_name_override", pinned[1]))
        return grpc.aio.secure_channel(target, channel_credentials(ca, tls.pair), options=opts)

    async def refresh(self, url: str) -> None:
        """Before dialing ``url`` with --peer-auto-tls: fetch the certificate it presents and
        pin it (``pin`` tells whether a channel built earlier is stale). A no-op otherwise."""
        if self.tls is None or not self.tls.pin_server_cert or not self.is_tls(url):
            return
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            return
        try:
            got = await asyncio.to_thread(fetch_server_certificate, parts.hostname, parts.port, self.fetch_timeout)
        except OSError as exc:
            log.debug("cannot fetch the certificate of %s: %s", url, exc)
            return
        self._pinned[grpc_target(url)] = got
