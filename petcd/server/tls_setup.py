"""The member's TLS, read from its settings at startup: what serves https/unixs client URLs,
what serves https peer URLs, and what this member presents when it dials its peers.

Every file is read here, before anything else starts, so a certificate or key that cannot be
used stops the member (exit 1) with etcd's text for the same mistake. --auto-tls and
--peer-auto-tls make self-signed certificates in ``<data-dir>/fixtures/{client,peer}`` as etcd
does (and reuse them on restart).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from petcd.config.server_config import TLSInfo
from petcd.config.settings import ServerSettings
from petcd.tls import (
    CIPHER_ENV,
    KeyPair,
    TLSFileError,
    cipher_env,
    load_ca,
    load_key_pair,
    self_signed_pair,
    server_credentials,
)

__all__ = ["TLS_SCHEMES", "MemberTLS", "ServingTLS", "ensure_cipher_env", "is_tls_url", "load_member_tls"]

log = logging.getLogger("petcd")

TLS_SCHEMES = ("https", "unixs")


def is_tls_url(url: str) -> bool:
    return urlsplit(url).scheme in TLS_SCHEMES


@dataclass(frozen=True, slots=True)
class ServingTLS:
    """A server side: its certificate, and the CA its clients' certificates must chain to."""

    pair: KeyPair
    ca_file: str
    ca_pem: bytes | None
    require_client_cert: bool

    def credentials(self) -> grpc.ServerCredentials:
        return server_credentials(self.pair, self.ca_pem, self.require_client_cert)


@dataclass(frozen=True, slots=True)
class MemberTLS:
    client: ServingTLS | None  # for https / unixs client URLs
    peer: ServingTLS | None  # for https peer URLs
    peer_ca_pem: bytes | None  # verifies the peers this member dials (system roots if None)
    peer_client_pair: KeyPair | None  # shown to the peers this member dials
    peer_auto: bool  # --peer-auto-tls made the peer certificate: peers' ones are not CA-signed
    allowed_cn: str  # --peer-cert-allowed-cn
    allowed_hostname: str  # --peer-cert-allowed-hostname
    check_peer_san: bool  # peers' client certificates must name the address they connect from
    client_allowed_hostname: str  # --client-cert-allowed-hostname

    @property
    def guards_peers(self) -> bool:
        return bool(self.allowed_cn or self.allowed_hostname or self.check_peer_san)


def _hosts(urls: Sequence[str]) -> list[str]:
    return [h for h in (urlsplit(u).hostname for u in urls if is_tls_url(u)) if h]


def _serving(info: TLSInfo, urls: Sequence[str], fixtures: str, validity: int,
             now: datetime.datetime, what: str) -> tuple[ServingTLS | None, bool]:
    """The server side for ``urls`` (None if none is TLS) and whether it is self-signed."""
    if not any(is_tls_url(u) for u in urls):
        if not info.empty:
            log.warning("no %s URL is https: ignoring the %s certificate and key files", what, what)
        return None, False
    auto = info.empty and info.auto_tls
    if auto:
        log.warning("automatically generating a self-signed %s certificate in %s (valid %d year%s)",
                    what, fixtures, validity, "" if validity == 1 else "s")
        pair = self_signed_pair(fixtures, _hosts(urls), validity, now)
    else:
        pair = load_key_pair(info.cert_file, info.key_file)
    ca_pem = load_ca(info.trusted_ca_file) if info.trusted_ca_file else None
    # etcd 3.5 requires and verifies client certificates whenever a trusted CA is configured
    require = info.client_cert_auth or ca_pem is not None
    if require and ca_pem is None:
        flag = "--trusted-ca-file" if what == "client" else "--peer-trusted-ca-file"
        raise TLSFileError(f"client certificate authentication on the {what} URLs needs {flag}")
    log.info("starting with %s TLS: cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %s", what,
             pair.cert_file, pair.key_file, info.trusted_ca_file, "true" if require else "false")
    return ServingTLS(pair, info.trusted_ca_file, ca_pem, require), auto


def load_member_tls(settings: ServerSettings, now: datetime.datetime) -> MemberTLS:
    """Read (or make) every certificate the member needs; TLSFileError if one cannot be used."""
    fixtures = os.path.join(settings.data_dir, "fixtures")
    validity = settings.self_signed_cert_validity
    client, _ = _serving(settings.client_tls, settings.listen_client_urls, os.path.join(fixtures, "client"),
                         validity, now, "client")
    peer, peer_auto = _serving(settings.peer_tls, settings.listen_peer_urls, os.path.join(fixtures, "peer"),
                               validity, now, "peer")
    p = settings.peer_tls
    if p.client_cert_file or p.client_key_file:
        dial_pair: KeyPair | None = load_key_pair(p.client_cert_file, p.client_key_file)
    else:
        dial_pair = peer.pair if peer is not None else None
    if dial_pair is None and not p.empty:
        dial_pair = load_key_pair(p.cert_file, p.key_file)
    if peer is not None:
        dial_ca = peer.ca_pem
    else:
        dial_ca = load_ca(p.trusted_ca_file) if p.trusted_ca_file else None
    check_san = peer is not None and peer.require_client_cert and not settings.peer_skip_client_san_verification
    return MemberTLS(client, peer, dial_ca, dial_pair, peer_auto, p.allowed_cn, p.allowed_hostname, check_san,
                     settings.client_tls.allowed_hostname if client is not None else "")


def ensure_cipher_env(suites: tuple[str, ...], args: Sequence[str]) -> None:
    """--cipher-suites: gRPC takes its TLS 1.2 cipher list from GRPC_SSL_CIPHER_SUITES, read
    once when gRPC loads, for every server and channel of the process (etcd too applies the
    list to client and peer TLS alike). The member is already past that point, so it starts
    itself again with the variable set; its front-ends inherit it. TLSFileError for a suite
    gRPC does not have."""
    if not suites:
        return
    value = cipher_env(suites)
    if os.environ.get(CIPHER_ENV) == value:
        return
    env = {**os.environ, CIPHER_ENV: value}
    sys.stdout.flush()
    sys.stderr.flush()
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    os.execve(sys.executable, [sys.executable, "-m", "petcd", *args], env)
