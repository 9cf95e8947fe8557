"""Startup with TLS files that cannot be used: exit 1 with etcd 3.5.1's error text (each case
run against the real binary too); --auto-tls; --cipher-suites."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from tests.tls.certs import PKI
from tests.tls.member import LOOPBACK, Member, etcdctl


def _cases(pki: PKI, tmp: Path) -> dict[str, tuple[list[str], str]]:
    junk = tmp / "junk.pem"
    junk.write_text("not a certificate\n")
    return {
        "missing-cert": ([f"--cert-file={tmp}/nonexistent.crt", f"--key-file={pki.server.key}"],
                         f"open {tmp}/nonexistent.crt: no such file or directory"),
        "missing-key": ([f"--cert-file={pki.server.cert}", f"--key-file={tmp}/nonexistent.key"],
                        f"open {tmp}/nonexistent.key: no such file or directory"),
        "cert-is-dir": ([f"--cert-file={tmp}", f"--key-file={pki.server.key}"], f"read {tmp}: is a directory"),
        "not-pem": ([f"--cert-file={junk}", f"--key-file={pki.server.key}"],
                    "tls: failed to find any PEM data in certificate input"),
        "wrong-key": ([f"--cert-file={pki.server.cert}", f"--key-file={pki.client.key}"],
                      "tls: private key does not match public key"),
        "missing-ca": ([f"--cert-file={pki.server.cert}", f"--key-file={pki.server.key}",
                        f"--trusted-ca-file={tmp}/nonexistent-ca.crt"],
                       f"open {tmp}/nonexistent-ca.crt: no such file or directory"),
    }


@pytest.mark.parametrize("case", ["missing-cert", "missing-key", "cert-is-dir", "not-pem", "wrong-key", "missing-ca"])
def test_unusable_file_stops_startup_with_etcds_error(pki: PKI, tmp_path: Path, case: str) -> None:
    args, message = _cases(pki, tmp_path)[case]
    outputs = {}
    for kind in ("etcd", "petcd"):
        rc, out = Member(tmp_path / kind, kind=kind, args=(*args, "--client-frontends=0") if kind == "petcd"
                         else tuple(args)).run_to_exit()
        assert rc == 1, out[-2000:]
        outputs[kind] = out
    assert message in outputs["etcd"], outputs["etcd"][-2000:]
    assert f"cannot start: {message}" in outputs["petcd"], outputs["petcd"][-2000:]


def test_unusable_peer_file_stops_startup(pki: PKI, tmp_path: Path) -> None:
    m = Member(tmp_path, client_scheme="http", peer_scheme="https",
               args=(f"--peer-cert-file={tmp_path}/none.crt", f"--peer-key-file={pki.peer.key}"))
    rc, out = m.run_to_exit()
    assert rc == 1 and f"cannot start: open {tmp_path}/none.crt: no such file or directory" in out


def test_auto_tls_makes_a_self_signed_certificate_in_the_data_dir(tmp_path: Path) -> None:
    m = Member(tmp_path, args=("--auto-tls", "--self-signed-cert-validity=2", "--client-frontends=1"))
    insecure = ["--insecure-transport=false", "--insecure-skip-tls-verify"]
    m.start(insecure)
    try:
        cert = m.data_dir / "fixtures" / "client" / "cert.pem"
        key = m.data_dir / "fixtures" / "client" / "key.pem"
        assert cert.is_file() and key.stat().st_mode & 0o777 == 0o600
        assert etcdctl(m.client_url, "put", "a", "1", tls=insecure).stdout == "OK\n"
        # the generated certificate is for the listen host, valid --self-signed-cert-validity years
        assert etcdctl(m.client_url, "get", "a", "--print-value-only", tls=[f"--cacert={cert}"]).stdout == "1\n"
        from cryptography import x509

        c = x509.load_pem_x509_certificate(cert.read_bytes())
        assert 729 <= (c.not_valid_after_utc - c.not_valid_before_utc).days <= 731
        first = cert.read_bytes()
    finally:
        m.stop()
    m.start(insecure)  # a restart reuses it, as etcd does
    m.stop()
    assert cert.read_bytes() == first


def _handshake(port: int, cafile: Path, cipher: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as s, ctx.wrap_socket(s, server_hostname=LOOPBACK):
            return True
    except (ssl.SSLError, OSError):
        return False


def test_cipher_suites_limit_tls12(pki: PKI, tmp_path: Path) -> None:
    m = Member(tmp_path, args=(f"--cert-file={pki.server.cert}", f"--key-file={pki.server.key}",
                               "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "--client-frontends=1"))
    m.start([f"--cacert={pki.ca.cert}"])
    try:
        assert _handshake(m.client_port, pki.ca.cert, "ECDHE-ECDSA-AES128-GCM-SHA256")
        assert not _handshake(m.client_port, pki.ca.cert, "ECDHE-ECDSA-AES256-GCM-SHA384")
    finally:
        m.stop()


def test_cipher_suite_grpc_lacks_is_refused(pki: PKI, tmp_path: Path) -> None:
    m = Member(tmp_path, args=(f"--cert-file={pki.server.cert}", f"--key-file={pki.server.key}",
                               "--cipher-suites=TLS_RSA_WITH_RC4_128_SHA"))
    rc, out = m.run_to_exit()
    assert rc == 1 and "TLS_RSA_WITH_RC4_128_SHA is not available in gRPC's TLS library" in out
