"""petcdctl's TLS client side against real etcd 3.5.1 serving https with certificates made here:
--cacert, client certificates (--cert/--key), --insecure-skip-tls-verify, and the errors."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.ctl.helpers import as_etcdctl, petcdctl
from tests.harness import Etcdctl, Server, free_ports


def _cert(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, ca: bool,
          server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    if not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                   x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    c, k = path.with_suffix(".crt"), path.with_suffix(".key")
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    d = tmp_path_factory.mktemp("tls")
    ca = _cert("petcd test CA", None, ca=True)
    ca_crt, _ = _write(d / "ca", *ca)
    srv_crt, srv_key = _write(d / "server", *_cert("server", ca, ca=False, server=True))
    cli_crt, cli_key = _write(d / "client", *_cert("client", ca, ca=False))
    client_port, peer_port = free_ports(2)
    s = Server("etcd", d, client_port=client_port, peer_port=peer_port,
               extra_args=(f"--cert-file={srv_crt}", f"--key-file={srv_key}", f"--trusted-ca-file={ca_crt}",
                           "--client-cert-auth", f"--listen-client-urls=https://127.0.0.1:{client_port}",
                           f"--advertise-client-urls=https://127.0.0.1:{client_port}"))
    s.spawn()
    files = {"ca": ca_crt, "cert": cli_crt, "key": cli_key}
    import time

    tls = [f"--cacert={ca_crt}", f"--cert={cli_crt}", f"--key={cli_key}"]
    for _ in range(100):
        if Etcdctl(s.endpoint, global_args=tls).run("endpoint", "health").rc == 0:
            break
        time.sleep(0.2)
    try:
        yield s, files
    finally:
        s.stop()


def test_tls_client(tls_etcd: tuple[Server, dict[str, str]]) -> None:
    s, f = tls_etcd
    ep = f"https://{s.endpoint}"
    good = [f"--cacert={f['ca']}", f"--cert={f['cert']}", f"--key={f['key']}"]
    cases = [
        (*good, "put", "tls", "v"),
        (*good, "get", "tls", "-w", "json"),
        (*good, "member", "list"),
        ("--insecure-skip-tls-verify", f"--cert={f['cert']}", f"--key={f['key']}", "get", "tls", "--print-value-only"),
        ("--cacert=", "get", "tls"),
        ("--cert=/nonexistent.crt", f"--key={f['key']}", "get", "tls"),
    ]
    for args in cases:
        e = Etcdctl(ep).run(*args)
        p = as_etcdctl(petcdctl(ep, *args))
        if e.rc == 0:
            from tests.harness import Normaliser

            n = Normaliser()
            assert (p.rc, n.output(p.stdout, "json" if "json" in args else "simple")) == \
                (e.rc, n.output(e.stdout, "json" if "json" in args else "simple")), f"{args}\n{e}\n{p}"
        else:
            assert (p.rc, p.stderr.splitlines()[-1:]) == (e.rc, e.stderr.splitlines()[-1:]), f"{args}\n{e}\n{p}"
    # without the client certificate the server refuses: a clear error, not success
    r = petcdctl(ep, f"--cacert={f['ca']}", "--command-timeout=2s", "get", "tls")
    assert r.rc != 0 and "Error:" in r.stderr, r
