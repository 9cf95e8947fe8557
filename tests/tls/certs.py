"""Certificates made at test time with the cryptography package: a CA, leaves it signs (server,
client, peer; expired ones), and a second, unrelated CA."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Files:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CA:
    name: str
    cert: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def issue(self, directory: Path, name: str, cn: str, *, expired: bool = False,
              hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Files:
        key = ec.generate_private_key(ec.SECP256R1())
        if expired:
            start, end = _NOW - datetime.timedelta(days=10), _NOW - datetime.timedelta(days=1)
        else:
            start, end = _NOW - datetime.timedelta(days=1), _NOW + datetime.timedelta(days=30)
        alt: list[x509.GeneralName] = []
        for h in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                alt.append(x509.DNSName(h))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _save(directory, name, key, cert)


def _save(directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Files:
    directory.mkdir(parents=True, exist_ok=True)
    c, k = directory / f"{name}.crt", directory / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return Files(c, k)


def make_ca(directory: Path, name: str) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1)).not_valid_after(_NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = _save(directory, name, key, cert)
    return CA(name, files.cert, key, cert)


@dataclass(frozen=True)
class PKI:
    """What most TLS tests need: ``ca`` signs server, client (CN alice), peer (CN peer) and an
    expired client; ``other`` is a CA nobody trusts, with its own client (CN mallory)."""

    ca: CA
    other: CA
    server: Files
    client: Files
    peer: Files
    expired: Files
    stranger: Files


def make_pki(directory: Path) -> PKI:
    ca = make_ca(directory, "ca")
    other = make_ca(directory, "other-ca")
    return PKI(
        ca=ca, other=other,
        server=ca.issue(directory, "server", "server"),
        client=ca.issue(directory, "client", "alice"),
        peer=ca.issue(directory, "peer", "peer"),
        expired=ca.issue(directory, "expired", "alice", expired=True),
        stranger=other.issue(directory, "stranger", "mallory"),
    )
