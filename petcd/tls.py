"""Certificates and keys for TLS: loading them as etcd does, generating self-signed ones, and
turning them into gRPC credentials.

A shared leaf (it imports nothing of petcd): the member, its front-end processes and its peer
transport all build their credentials here. Errors are ``TLSFileError`` whose text is what etcd
3.5.1 prints for the same mistake (Go's ``open <path>: no such file or directory``,
``tls: private key does not match public key``, ...), so operators see the message they know.

gRPC's Python API takes PEM bytes, not paths, and offers no TLS version bounds and no per-server
cipher list: the cipher list is the process-wide ``GRPC_SSL_CIPHER_SUITES`` variable, read once
when gRPC loads (see ``cipher_env``), and TLS is always 1.2 or 1.3 (BoringSSL's range in gRPC).

``cryptography`` is imported by the functions that read or make certificates, not with the
module: a member without TLS flags never needs it (its x509 package takes ~30 ms to import).
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "CIPHER_ENV",
    "OPENSSL_CIPHERS",
    "TLS13_SUITES",
    "KeyPair",
    "TLSFileError",
    "certificate_names",
    "channel_credentials",
    "cipher_env",
    "fetch_server_certificate",
    "hostname_matches",
    "load_ca",
    "load_key_pair",
    "self_signed_pair",
    "server_credentials",
]

CIPHER_ENV = "GRPC_SSL_CIPHER_SUITES"

# Go's names (which --cipher-suites takes) for the TLS 1.2 suites gRPC's BoringSSL offers.
OPENSSL_CIPHERS: dict[str, str] = {
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3's suites cannot be chosen, in Go as in BoringSSL: all three are always offered.
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})


class TLSFileError(Exception):
    """A certificate, key or CA file that cannot be used; the text is etcd's for the same case."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert_file: str
    key_file: str
    cert_pem: bytes
    key_pem: bytes


def _read(path: str) -> bytes:
    """The file's bytes, or TLSFileError with Go's wording of the failure."""
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise TLSFileError(f"read {path}: is a directory") from None
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno is not None else str(exc)
        if exc.errno == errno.ENOENT:
            reason = "no such file or directory"
        raise TLSFileError(f"open {path}: {reason}") from None


def _certificates(pem: bytes) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def load_key_pair(cert_file: str, key_file: str) -> KeyPair:
    """A certificate (chain) and its private key, checked as Go's tls.LoadX509KeyPair checks them."""
    from cryptography.hazmat.primitives import serialization

    if not cert_file or not key_file:
        raise TLSFileError(f"KeyFile and CertFile must both be present[key: {key_file}, cert: {cert_file}]")
    cert_pem = _read(cert_file)
    key_pem = _read(key_file)
    certs = _certificates(cert_pem)
    if not certs:
        raise TLSFileError("tls: failed to find any PEM data in certificate input")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise TLSFileError("tls: failed to find any PEM data in key input") from None
    leaf_public = certs[0].public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    key_public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf_public != key_public:
        raise TLSFileError("tls: private key does not match public key")
    return KeyPair(cert_file, key_file, cert_pem, key_pem)


def load_ca(path: str) -> bytes:
    """A CA bundle. etcd starts with a file holding no certificate and then refuses every peer;
    petcd stops at once instead, naming the file."""
    pem = _read(path)
    if not _certificates(pem):
        raise TLSFileError(f"{path}: no PEM certificate found in the trusted CA file")
    return pem


def server_credentials(pair: KeyPair, ca_pem: bytes | None, require_client_cert: bool) -> grpc.ServerCredentials:
    """With a CA, clients must present a certificate it signed (etcd 3.5 does so whenever a
    trusted CA file is given, --client-cert-auth or not)."""
    if require_client_cert and ca_pem is None:
        raise TLSFileError("client certificate authentication needs a trusted CA file (--trusted-ca-file)")
    return grpc.ssl_server_credentials([(pair.key_pem, pair.cert_pem)], root_certificates=ca_pem,
                                       require_client_auth=require_client_cert)


def channel_credentials(ca_pem: bytes | None, pair: KeyPair | None) -> grpc.ChannelCredentials:
    """Credentials for dialing a TLS server: verified against ``ca_pem`` (the system's roots if
    None), presenting ``pair`` when the server asks for a client certificate."""
    if pair is None:
        return grpc.ssl_channel_credentials(root_certificates=ca_pem)
    return grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=pair.key_pem,
                                        certificate_chain=pair.cert_pem)


def cipher_env(suites: tuple[str, ...]) -> str:
    """The GRPC_SSL_CIPHER_SUITES value for --cipher-suites (Go names), or TLSFileError for a
    suite gRPC's TLS library does not have."""
    names: list[str] = []
    for suite in suites:
        if suite in TLS13_SUITES:
            names.append(suite)  # accepted, as Go accepts it; TLS 1.3 offers all three anyway
            continue
        name = OPENSSL_CIPHERS.get(suite)
        if name is None:
            raise TLSFileError(f"--cipher-suites: {suite} is not available in gRPC's TLS library (BoringSSL)")
        if name not in names:
            names.append(name)
    if not any(n not in TLS13_SUITES for n in names):
        raise TLSFileError("--cipher-suites lists only TLS 1.3 suites, which cannot be chosen (TLS 1.3 always "
                           "offers all three); gRPC needs at least one TLS 1.2 suite in the list")
    return ":".join(names)


# ---------------------------------------------------------------- self-signed (--auto-tls)


def _host_names(hosts: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return names


def self_signed_pair(directory: str, hosts: list[str], validity_years: int,
                     now: datetime.datetime) -> KeyPair:
    """etcd's --auto-tls: ``cert.pem`` and ``key.pem`` in ``directory`` (0700; key 0600), valid
    ``validity_years`` from ``now`` for ``hosts``; files already there are reused, as etcd does."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(directory)
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    if cert_path.exists() and key_path.exists():
        return load_key_pair(str(cert_path), str(key_path))
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise TLSFileError(f"cannot create {d}: {exc.strerror}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * validity_years))
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    names = _host_names(hosts)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    cert_path.write_bytes(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return KeyPair(str(cert_path), str(key_path), cert_pem, key_pem)


def fetch_server_certificate(host: str, port: int, timeout: float) -> tuple[bytes, str]:
    """The leaf certificate a TLS server presents, unverified, and a name it is valid for (to
    verify it with afterwards). Blocking: run it in a thread.

    For peers with --peer-auto-tls, whose certificates no CA signed: etcd does not verify them
    at all; gRPC cannot skip verification, so the certificate is fetched first and then pinned
    as the only trusted one for the connection. Either way the bytes are encrypted."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as sock, ctx.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise OSError(f"{host}:{port} presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    name = host
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        dns = san.get_values_for_type(x509.DNSName)
        if host not in ips and host not in dns:
            name = (ips + dns + [host])[0]
    except x509.ExtensionNotFound:
        pass
    return cert.public_bytes(serialization.Encoding.PEM), name


def certificate_names(pem: bytes) -> tuple[str, list[str]]:
    """The common name and the DNS / IP subject alternative names of a PEM certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alt = [*san.get_values_for_type(x509.DNSName), *(str(i) for i in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        alt = []
    return cn, alt


def hostname_matches(pattern: str, host: str) -> bool:
    """Does a certificate name (``*.example.com`` allowed) cover ``host``, as Go's VerifyHostname?"""
    p, h = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if p == h:
        return True
    if p.startswith("*.") and "." in h:
        return h.split(".", 1)[1] == p[2:]
    return False
